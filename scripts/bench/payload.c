/* Payloads for scripts/bench.sh, the same binary under every supervisor.
 * Built by the bench (gcc -O2 -static). The mode comes from $BENCH_MODE (so an
 * s6 or runit ./run symlink needs no arguments), else from argv[1]:
 *   idle     pause forever
 *   crash    append "<start ns> <exit ns>\n" (CLOCK_MONOTONIC) to $BENCH_OUT, exit 1
 *   orphans  release $BENCH_ORPHANS (10000) orphans in waves of $BENCH_WAVE (500)
 *            and time, per wave, from their release until the reaper has
 *            reaped them all; append "<total ns> <count>\n" to $BENCH_OUT, then idle
 *   sntp HOST:PORT...  one SNTP (mode 3) query to each server, as ntpdate -q
 *            would; exit 0 when every one answered in time with a sane reply */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void append(const char *line) {
  const char *out = getenv("BENCH_OUT");
  if (!out) return;
  int fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return;
  if (write(fd, line, strlen(line)) < 0) { /* nothing to do */ }
  close(fd);
}

static void idle(void) {
  for (;;) pause();
}

static int orphans(void) {
  const char *n_env = getenv("BENCH_ORPHANS"), *w_env = getenv("BENCH_WAVE");
  int total = n_env ? atoi(n_env) : 10000, wave = w_env ? atoi(w_env) : 500;
  pid_t *pids = calloc((size_t)wave, sizeof *pids);
  long long reap_ns = 0;
  int done = 0;
  while (done < total) {
    int n = total - done < wave ? total - done : wave;
    int release[2], report[2];
    if (pipe2(release, O_CLOEXEC) || pipe2(report, O_CLOEXEC)) return 1;
    pid_t mid = fork();
    if (mid < 0) return 1;
    if (mid == 0) {  /* the intermediate: forks the orphans-to-be, reports them, exits */
      close(release[1]);
      close(report[0]);
      for (int i = 0; i < n; i++) {
        pid_t k = fork();
        if (k < 0) _exit(1);
        if (k == 0) {
          char c;
          while (read(release[0], &c, 1) < 0 && errno == EINTR) {}
          _exit(0);
        }
        if (write(report[1], &k, sizeof k) != sizeof k) _exit(1);
      }
      _exit(0);
    }
    close(release[0]);
    close(report[1]);
    for (int i = 0; i < n; i++)
      if (read(report[0], &pids[i], sizeof pids[i]) != sizeof pids[i]) return 1;
    close(report[0]);
    waitpid(mid, NULL, 0);  /* now every one of them is the reaper's */
    long long t0 = now_ns();
    close(release[1]);      /* they all exit */
    for (int i = 0; i < n; i++) {
      struct timespec pause_ts = {0, 20000};
      while (kill(pids[i], 0) == 0) nanosleep(&pause_ts, NULL);  /* a zombie still answers */
    }
    reap_ns += now_ns() - t0;
    done += n;
  }
  char line[64];
  snprintf(line, sizeof line, "%lld %d\n", reap_ns, done);
  append(line);
  idle();
  return 0;
}

static int sntp(int argc, char **argv) {
  int ok = 0;
  for (int i = 0; i < argc; i++) {
    char host[64];
    snprintf(host, sizeof host, "%s", argv[i]);
    char *colon = strrchr(host, ':');
    int port = 123;
    if (colon) { *colon = 0; port = atoi(colon + 1); }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) continue;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { close(fd); continue; }
    unsigned char q[48] = {0x23}, r[48];  /* LI 0, version 4, mode 3 (client) */
    struct timespec t1, t4;
    clock_gettime(CLOCK_REALTIME, &t1);
    uint32_t sec = htonl((uint32_t)(t1.tv_sec + 2208988800U)), frac = htonl((uint32_t)t1.tv_nsec);
    memcpy(q + 40, &sec, 4);
    memcpy(q + 44, &frac, 4);
    if (send(fd, q, sizeof q, 0) == sizeof q && recv(fd, r, sizeof r, 0) == sizeof r &&
        (r[0] & 7) == 4 && r[1] >= 1 && r[1] <= 15 && memcmp(r + 24, q + 40, 8) == 0) {
      clock_gettime(CLOCK_REALTIME, &t4);
      uint32_t rs;
      memcpy(&rs, r + 40, 4);
      double server = (double)ntohl(rs) - 2208988800.0;
      printf("server %s, offset %+.3f s\n", argv[i], server - (double)t4.tv_sec);
      ok++;
    }
    close(fd);
  }
  return ok == argc ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *mode = getenv("BENCH_MODE");
  if (!mode && argc > 1) { mode = argv[1]; argc--; argv++; }
  if (!mode) return 2;
  if (!strcmp(mode, "idle")) idle();
  if (!strcmp(mode, "crash")) {
    long long start = now_ns();
    char line[64];
    snprintf(line, sizeof line, "%lld %lld\n", start, now_ns());
    append(line);
    _exit(1);
  }
  if (!strcmp(mode, "orphans")) return orphans();
  if (!strcmp(mode, "sntp")) return sntp(argc - 1, argv + 1);
  return 2;
}
