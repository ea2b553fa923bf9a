#pragma once
// The device's side of the attestation exchange over HTTPS (pisec_attest_client):
// the verifier's certificate checked against a pinned CA file and its host
// name, one connection for the challenge and the evidence, the EAR's
// signature and nonce checked. Used by `pisecd attest` and the test device.
#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "pisec/attest.hpp"

namespace pisec::attest {

// "https://host[:port][/prefix]" (port 443 by default). Throws Error.
struct Url {
  std::string host;
  std::string port = "443";
  std::string prefix;  // without a trailing '/', "" for none
};
Url parse_https_url(const std::string& url);

// Anything that kept an answer from arriving or being believed: connection,
// TLS, HTTP, a bad signature or another nonce. "No answer" to the device.
struct NoAnswer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Client {
 public:
  // ca_file: PEM CA certificates the verifier's certificate must chain to
  // (empty: the system's). connect_host overrides where to connect (an
  // address resolved elsewhere, e.g. with c-ares: a static glibc binary has
  // no NSS for getaddrinfo on musl); the certificate is still checked
  // against url.host.
  Client(const Url& url, const std::string& ca_file, std::chrono::seconds timeout,
         const std::string& connect_host = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // POST prefix + target; returns (HTTP status, body). Throws NoAnswer.
  std::pair<int, std::string> post(const std::string& target, const std::string& body);
  // POST /v1/challenge; the nonce. Throws NoAnswer (also for a non-200 answer).
  std::string challenge(const std::string& device_id);
  // POST /v1/evidence with the sealed report; the verified result, whose
  // nonce must be `nonce`. Throws NoAnswer.
  Result evidence(const std::string& sealed_report, const std::string& nonce, const crypto::PublicKey& verifier);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string prefix_;
};

}  // namespace pisec::attest
