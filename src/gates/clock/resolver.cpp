// Name resolution with c-ares on the Asio loop: c-ares tells us (sock_state_cb)
// which sockets it wants watched; Asio waits on them and on one timer for
// ares_timeout, and hands readiness back through ares_process_fd. No polling.

#include <arpa/inet.h>
#include <ares.h>
#include <netinet/in.h>

#include <map>
#include <mutex>

#include "asio_includes.hpp"
#include "pisec/gates/clock.hpp"

namespace asio = boost::asio;

namespace pisec::clock {

struct Resolver::Impl : std::enable_shared_from_this<Impl> {
  struct Watch {
    std::unique_ptr<asio::posix::stream_descriptor> descriptor;
    std::uint64_t id = 0;  // fds are reused: handlers check they still mean this one
    bool want_read = false, want_write = false;
    bool reading = false, writing = false;
  };
  struct Query {
    std::weak_ptr<Impl> owner;
    Callback callback;
  };

  asio::io_context& io;
  ares_channel channel = nullptr;
  asio::steady_timer timer;
  std::map<int, Watch> watches;
  std::uint64_t next_id = 1;
  bool cancelled = false;
  std::string init_error;

  explicit Impl(asio::io_context& context) : io(context), timer(context) {}

  void init(const std::string& dns_servers) {
    static std::once_flag library_once;
    static int library_status = ARES_SUCCESS;
    std::call_once(library_once, [] { library_status = ares_library_init(ARES_LIB_INIT_ALL); });
    if (library_status != ARES_SUCCESS) {
      init_error = std::string("c-ares: ") + ares_strerror(library_status);
      return;
    }
    ares_options options{};
    options.sock_state_cb = &Impl::on_sock_state;
    options.sock_state_cb_data = this;
    int status = ares_init_options(&channel, &options, ARES_OPT_SOCK_STATE_CB);
    if (status != ARES_SUCCESS) {
      channel = nullptr;
      init_error = std::string("c-ares: ") + ares_strerror(status);
      return;
    }
    if (!dns_servers.empty()) {
      status = ares_set_servers_ports_csv(channel, dns_servers.c_str());
      if (status != ARES_SUCCESS) {
        init_error = "c-ares: bad DNS servers \"" + dns_servers + "\": " + ares_strerror(status);
        ares_destroy(std::exchange(channel, nullptr));
      }
    }
  }

  ~Impl() { shutdown(); }

  void shutdown() {
    cancelled = true;
    timer.cancel();
    if (channel) {
      // Destroying the channel answers pending queries with ARES_EDESTRUCTION
      // (dropped, see on_addrinfo) and reports each socket closed to on_sock_state.
      ares_channel c = std::exchange(channel, nullptr);
      ares_destroy(c);
    }
    for (auto& [fd, w] : watches) release(w);
    watches.clear();
  }

  static void release(Watch& w) {
    if (!w.descriptor) return;
    boost::system::error_code ignored;
    w.descriptor->cancel(ignored);
    (void)w.descriptor->release();  // c-ares owns and closes the fd
    w.descriptor.reset();
  }

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    if (!readable && !writable) {
      auto it = self->watches.find(fd);
      if (it != self->watches.end()) {
        release(it->second);
        self->watches.erase(it);
      }
      return;
    }
    auto& w = self->watches[fd];
    if (!w.descriptor) {
      w.descriptor = std::make_unique<asio::posix::stream_descriptor>(self->io, fd);
      w.id = self->next_id++;
    }
    w.want_read = readable != 0;
    w.want_write = writable != 0;
    if (!self->cancelled) self->arm(fd);
  }

  void arm(int fd) {
    auto it = watches.find(fd);
    if (it == watches.end()) return;
    Watch& w = it->second;
    if (w.want_read && !w.reading) {
      w.reading = true;
      w.descriptor->async_wait(asio::posix::stream_descriptor::wait_read,
                               [self = shared_from_this(), fd, id = w.id](boost::system::error_code ec) {
                                 self->on_ready(fd, id, ec, true);
                               });
    }
    if (w.want_write && !w.writing) {
      w.writing = true;
      w.descriptor->async_wait(asio::posix::stream_descriptor::wait_write,
                               [self = shared_from_this(), fd, id = w.id](boost::system::error_code ec) {
                                 self->on_ready(fd, id, ec, false);
                               });
    }
  }

  void on_ready(int fd, std::uint64_t id, boost::system::error_code ec, bool read) {
    auto it = watches.find(fd);
    if (it == watches.end() || it->second.id != id) return;  // closed (or reused) meanwhile
    (read ? it->second.reading : it->second.writing) = false;
    if (cancelled || !channel || ec == asio::error::operation_aborted) return;
    ares_process_fd(channel, read ? fd : ARES_SOCKET_BAD, read ? ARES_SOCKET_BAD : fd);
    arm(fd);  // still wanted? wait again (a no-op if c-ares closed it)
    update_timer();
  }

  void update_timer() {
    if (cancelled || !channel) return;
    timeval tv{};
    if (!ares_timeout(channel, nullptr, &tv)) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->cancelled || !self->channel) return;
      ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // expire timed-out queries
      self->update_timer();
    });
  }

  static void on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
    std::unique_ptr<Query> query(static_cast<Query*>(arg));
    std::vector<std::string> addresses;
    if (status == ARES_SUCCESS && result) {
      for (auto* node = result->nodes; node; node = node->ai_next) {
        char text[INET6_ADDRSTRLEN] = {};
        if (node->ai_family == AF_INET) {
          const auto* sin = reinterpret_cast<const sockaddr_in*>(node->ai_addr);  // c-ares API shape
          inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
        } else if (node->ai_family == AF_INET6) {
          const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(node->ai_addr);  // c-ares API shape
          inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
        } else {
          continue;
        }
        addresses.emplace_back(text);
      }
    }
    if (result) ares_freeaddrinfo(result);
    auto owner = query->owner.lock();
    if (!owner || owner->cancelled || status == ARES_EDESTRUCTION) return;
    std::string error;
    if (status != ARES_SUCCESS) error = std::string("cannot resolve: ") + ares_strerror(status);
    else if (addresses.empty()) error = "cannot resolve: no IPv4/IPv6 address";
    // Called from inside ares_process_fd: hand the answer over outside c-ares.
    asio::post(owner->io, [cb = std::move(query->callback), addresses = std::move(addresses),
                           error = std::move(error)]() mutable { cb(std::move(addresses), std::move(error)); });
  }
};

Resolver::Resolver(asio::io_context& io, const std::string& dns_servers) : impl_(std::make_shared<Impl>(io)) {
  impl_->init(dns_servers);
}

Resolver::~Resolver() { impl_->shutdown(); }

void Resolver::cancel() { impl_->shutdown(); }

void Resolver::resolve(const std::string& host, Callback callback) {
  boost::system::error_code ec;
  auto literal = asio::ip::make_address(host, ec);
  if (!ec) {
    asio::post(impl_->io, [cb = std::move(callback), text = literal.to_string()] { cb({text}, ""); });
    return;
  }
  if (impl_->cancelled) return;
  if (!impl_->channel) {
    asio::post(impl_->io, [cb = std::move(callback), error = impl_->init_error] { cb({}, error); });
    return;
  }
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  auto* query = new Impl::Query{impl_, std::move(callback)};  // owned by on_addrinfo, which c-ares always calls
  ares_getaddrinfo(impl_->channel, host.c_str(), nullptr, &hints, &Impl::on_addrinfo, query);
  impl_->update_timer();
}

}  // namespace pisec::clock
