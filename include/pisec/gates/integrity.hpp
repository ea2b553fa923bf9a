#pragma once
// The integrity gate: the signed manifest's signature, then every listed file.
// The hashing runs in a worker thread (hundreds of MB take a while on a Pi 1B);
// the result is posted back to the io_context. Formats live in formats.hpp.
#include <atomic>
#include <memory>

#include "pisec/config.hpp"
#include "pisec/gates.hpp"

namespace pisec::gates {

// The whole check, synchronously: signature over the manifest's exact bytes,
// then every file under cfg.root. Detail on success: "manifest signed by key
// <keynum hex>, N files verified"; on failure it names the first bad file
// ("payload/app: sha256 mismatch (expected ab12…, got cd34…)") and how many
// more failed. Throws crypto::Cancelled when *cancel becomes true.
Outcome check_integrity(const config::IntegrityGate& cfg, const std::atomic<bool>* cancel = nullptr);

// Gate named "integrity". cancel() stops the worker between 64 KiB buffers and
// drops its result; destroying the gate cancels and joins the worker.
std::unique_ptr<Gate> make_integrity_gate(const config::IntegrityGate& cfg);

}  // namespace pisec::gates
