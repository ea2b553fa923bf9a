#pragma once
// The arch gate: can the Pi 1B run the payload and the ELF files the manifest
// lists? The ELF parsing is in formats.hpp (pisec::elf), shared with elfcheck.
#include <memory>

#include "pisec/config.hpp"
#include "pisec/formats.hpp"
#include "pisec/gates.hpp"

namespace pisec::elf {

// The arch gate: the payload executable (command[0], resolved in the payload
// rootfs and PATH; a "#!" script's interpreter is checked instead) and, when
// the integrity gate is enabled with a manifest, every ELF file the manifest
// lists (paths relative to integrity.root). A dynamic payload's program
// interpreter must exist in the payload's root.
std::unique_ptr<gates::Gate> make_arch_gate(const config::ArchGate& arch,
                                            const config::Payload& payload,
                                            const config::IntegrityGate& integrity);

// The gate's decision as a plain function (what the Gate posts as its outcome).
gates::Outcome run_arch_checks(const config::ArchGate& arch, const config::Payload& payload,
                               const config::IntegrityGate& integrity);

}  // namespace pisec::elf
