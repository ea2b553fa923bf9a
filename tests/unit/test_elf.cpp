// elfcheck and the arch gate over synthetic ELF images built here, byte by
// byte, so every build attribute and every kind of damage can be tested on
// any machine (the same binary runs under qemu-arm1176).
#include <elf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>

#include "child.hpp"
#include "pisec/gates/arch.hpp"

using namespace pisec;
using elf::Status;
using elf::Target;

namespace {

using Bytes = std::vector<std::uint8_t>;

void put_uleb(Bytes& out, std::uint64_t v) {
  do {
    std::uint8_t b = static_cast<std::uint8_t>(v & 0x7f);
    v >>= 7;
    out.push_back(static_cast<std::uint8_t>(b | (v != 0 ? 0x80 : 0)));
  } while (v != 0);
}

void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void put_str(Bytes& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
  out.push_back(0);
}

// One sub-subsection: tag, 4-byte size (covering tag and size), body.
Bytes subsub(std::uint32_t tag, const Bytes& body) {
  Bytes out;
  put_uleb(out, tag);
  put_u32(out, static_cast<std::uint32_t>(out.size() + 4 + body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// One vendor subsection: 4-byte length, vendor name, contents.
Bytes subsection(std::string_view vendor, const Bytes& contents) {
  Bytes body;
  put_str(body, vendor);
  body.insert(body.end(), contents.begin(), contents.end());
  Bytes out;
  put_u32(out, static_cast<std::uint32_t>(4 + body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// Integer attributes as (tag, value) pairs.
Bytes attrs(std::initializer_list<std::pair<std::uint32_t, std::uint32_t>> tags) {
  Bytes out;
  for (auto [t, v] : tags) {
    put_uleb(out, t);
    put_uleb(out, v);
  }
  return out;
}

// A whole .ARM.attributes section with one aeabi Tag_File list.
Bytes aeabi_file(const Bytes& attribute_list) {
  Bytes out{'A'};
  Bytes sub = subsection("aeabi", subsub(1, attribute_list));
  out.insert(out.end(), sub.begin(), sub.end());
  return out;
}

// The build attributes GCC writes for -march=armv6kz -mfpu=vfp -mfloat-abi=softfp.
Bytes armv6kz_vfp() { return aeabi_file(attrs({{6, 7}, {8, 1}, {9, 1}, {10, 2}, {26, 2}})); }

Bytes go_buildinfo(std::string_view version, std::string_view modinfo, std::uint8_t flags = 2) {
  Bytes out(32, 0);
  std::memcpy(out.data(), "\xff Go buildinf:", 14);
  out[14] = 4;  // pointer size
  out[15] = flags;
  put_uleb(out, version.size());
  out.insert(out.end(), version.begin(), version.end());
  put_uleb(out, modinfo.size());
  out.insert(out.end(), modinfo.begin(), modinfo.end());
  return out;
}

std::string go_modinfo(std::string_view goarm_line) {
  // Go wraps the text in 16-byte sentinels; their bytes must not confuse the reader.
  std::string sentinel(16, '\xf9');
  return sentinel + "path\tcommand-line-arguments\nbuild\t-compiler=gc\nbuild\tGOARCH=arm\n" +
         std::string(goarm_line) + "build\tGOOS=linux\n" + sentinel;
}

// A 32-bit little-endian ELF file: header, optional PT_INTERP, then the
// given sections and a section name table, section headers last.
struct Image32 {
  std::uint16_t machine = EM_ARM;
  std::uint16_t type = ET_EXEC;
  std::uint32_t flags = EF_ARM_EABI_VER5;
  std::string interpreter;
  std::vector<std::pair<std::string, Bytes>> sections;  // name, contents

  Bytes build() const {
    Bytes out(sizeof(Elf32_Ehdr), 0);
    Elf32_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS32;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = type;
    eh.e_machine = machine;
    eh.e_version = EV_CURRENT;
    eh.e_flags = flags;
    eh.e_ehsize = sizeof(Elf32_Ehdr);
    if (!interpreter.empty()) {
      eh.e_phoff = static_cast<Elf32_Off>(out.size());
      eh.e_phentsize = sizeof(Elf32_Phdr);
      eh.e_phnum = 1;
      Elf32_Phdr ph{};
      ph.p_type = PT_INTERP;
      ph.p_offset = static_cast<Elf32_Off>(out.size() + sizeof(Elf32_Phdr));
      ph.p_filesz = static_cast<Elf32_Word>(interpreter.size() + 1);
      append(out, &ph, sizeof ph);
      put_str(out, interpreter);
    }
    std::vector<Elf32_Shdr> headers(1);  // SHT_NULL first
    Bytes names{0};
    auto add = [&](const std::string& name, const Bytes& contents, std::uint32_t sh_type) {
      Elf32_Shdr sh{};
      sh.sh_name = static_cast<Elf32_Word>(names.size());
      put_str(names, name);
      sh.sh_type = sh_type;
      sh.sh_offset = static_cast<Elf32_Off>(out.size());
      sh.sh_size = static_cast<Elf32_Word>(contents.size());
      out.insert(out.end(), contents.begin(), contents.end());
      headers.push_back(sh);
    };
    for (const auto& [name, contents] : sections)
      add(name, contents, name == ".ARM.attributes" ? SHT_ARM_ATTRIBUTES : SHT_PROGBITS);
    Elf32_Shdr strtab{};
    strtab.sh_name = static_cast<Elf32_Word>(names.size());
    put_str(names, ".shstrtab");
    strtab.sh_type = SHT_STRTAB;
    strtab.sh_offset = static_cast<Elf32_Off>(out.size());
    strtab.sh_size = static_cast<Elf32_Word>(names.size());
    out.insert(out.end(), names.begin(), names.end());
    headers.push_back(strtab);
    eh.e_shoff = static_cast<Elf32_Off>(out.size());
    eh.e_shentsize = sizeof(Elf32_Shdr);
    eh.e_shnum = static_cast<Elf32_Half>(headers.size());
    eh.e_shstrndx = static_cast<Elf32_Half>(headers.size() - 1);
    for (const auto& sh : headers) append(out, &sh, sizeof sh);
    std::memcpy(out.data(), &eh, sizeof eh);
    return out;
  }

  static void append(Bytes& out, const void* p, std::size_t n) {
    auto b = static_cast<const std::uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
};

Bytes arm_with_attributes(const Bytes& attributes) {
  Image32 img;
  img.sections = {{".text", Bytes(16, 0)}, {".ARM.attributes", attributes}};
  return img.build();
}

Bytes x86_64_image() {
  Bytes out(sizeof(Elf64_Ehdr), 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  std::memcpy(out.data(), &eh, sizeof eh);
  return out;
}

elf::Verdict armv6(const Bytes& b) { return elf::check_elf(b, Target::armv6); }

// The reason a refused (or otherwise not running) image gives.
std::string refusal(const Bytes& b, Status expected = Status::refused) {
  auto v = armv6(b);
  INFO(elf::describe(v, Target::armv6));
  REQUIRE(v.status == expected);
  return v.detail;
}

Bytes read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// A throwaway directory for gate tests.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pisec-elf-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& rel, const Bytes& contents) const {
    auto p = path / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(contents.data()),
                                             static_cast<std::streamsize>(contents.size()));
    return p.string();
  }
  std::string write(const std::string& rel, const std::string& text) const {
    return write(rel, Bytes(text.begin(), text.end()));
  }
};

struct GateRun {
  bool called = false;
  gates::Outcome outcome;
};

GateRun run_gate(const config::ArchGate& arch, const config::Payload& payload,
                 const config::IntegrityGate& integrity) {
  boost::asio::io_context io;
  auto gate = elf::make_arch_gate(arch, payload, integrity);
  GateRun r;
  gate->start(io, [&](gates::Outcome o) {
    r.called = true;
    r.outcome = std::move(o);
  });
  CHECK_FALSE(r.called);  // start() returns before the work is done
  io.run();
  REQUIRE(r.called);
  CHECK(gate->name() == "arch");
  return r;
}

config::IntegrityGate no_manifest() {
  config::IntegrityGate g;
  g.enabled = false;
  return g;
}

}  // namespace

TEST_CASE("ARMv6KZ + VFPv2 + Thumb-1 soft-float code runs on ARMv6", "[elf]") {
  auto v = armv6(arm_with_attributes(armv6kz_vfp()));
  CHECK(v.status == Status::runs);
  CHECK(elf::describe(v, Target::armv6) == "runs on ARMv6 (ARMv6KZ, VFPv2, Thumb-1, soft-float)");
}

TEST_CASE("older and equal architectures run on ARMv6", "[elf]") {
  for (std::uint32_t arch : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 9u}) {
    INFO("Tag_CPU_arch " << arch);
    CHECK(armv6(arm_with_attributes(aeabi_file(attrs({{6, arch}, {9, 1}})))).status == Status::runs);
  }
  auto v5te = armv6(arm_with_attributes(aeabi_file(attrs({{6, 4}, {8, 1}, {9, 1}}))));
  CHECK(v5te.detail == "ARMv5TE, no FP, Thumb-1, soft-float");
}

TEST_CASE("hard-float VFPv2 code runs and is reported as hard-float", "[elf]") {
  auto by_tag = armv6(arm_with_attributes(aeabi_file(attrs({{6, 7}, {9, 1}, {10, 2}, {28, 1}}))));
  CHECK(by_tag.status == Status::runs);
  CHECK(by_tag.detail == "ARMv6KZ, VFPv2, Thumb-1, hard-float");

  Image32 img;
  img.flags = EF_ARM_EABI_VER5 | EF_ARM_ABI_FLOAT_HARD;
  img.interpreter = "/lib/ld-musl-armhf.so.1";
  img.sections = {{".ARM.attributes", aeabi_file(attrs({{6, 6}, {10, 2}}))}};
  auto v = armv6(img.build());
  CHECK(v.status == Status::runs);
  CHECK(v.interpreter == "/lib/ld-musl-armhf.so.1");
  CHECK(elf::describe(v, Target::armv6) ==
        "runs on ARMv6 (ARMv6, VFPv2, no Thumb, hard-float, dynamic: needs /lib/ld-musl-armhf.so.1)");
}

TEST_CASE("build attributes asking for more than ARMv6KZ are refused with the reason", "[elf]") {
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 10}})))) ==
        "Tag_CPU_arch v7 (ARMv7) is above ARMv6KZ");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 8}})))) ==
        "Tag_CPU_arch v6T2 (ARMv6T2) is above ARMv6KZ");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 14}})))) ==
        "Tag_CPU_arch v8-A (ARMv8-A) is above ARMv6KZ");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 13}})))).find("v7E-M") != std::string::npos);
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 40}})))).find("#40") != std::string::npos);
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {9, 2}})))) ==
        "Tag_THUMB_ISA_use Thumb-2 is not available on ARMv6 (Thumb-1 only)");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {12, 1}})))) ==
        "Tag_Advanced_SIMD_arch 1 (NEON) is not available on ARMv6");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {10, 3}})))) ==
        "Tag_FP_arch VFPv3 is above VFPv2");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {10, 6}})))) ==
        "Tag_FP_arch VFPv4-D16 is above VFPv2");
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {7, 'M'}})))).find("microcontroller") !=
        std::string::npos);
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {44, 2}})))).find("SDIV") != std::string::npos);
  CHECK(refusal(arm_with_attributes(aeabi_file(attrs({{6, 6}, {42, 1}})))).find("multiprocessing") !=
        std::string::npos);
}

TEST_CASE("an armhf ARMv7 binary lists every reason and its float ABI", "[elf]") {
  // What arm-linux-gnueabihf-gcc -march=armv7-a+fp writes.
  Image32 img;
  img.flags = EF_ARM_EABI_VER5 | EF_ARM_ABI_FLOAT_HARD;
  img.interpreter = "/lib/ld-linux-armhf.so.3";
  img.sections = {{".ARM.attributes",
                   aeabi_file(attrs({{6, 10}, {7, 'A'}, {8, 1}, {9, 2}, {10, 4}, {28, 1}, {34, 1}}))}};
  auto v = armv6(img.build());
  REQUIRE(v.status == Status::refused);
  CHECK(elf::describe(v, Target::armv6) ==
        "does not run on ARMv6: Tag_CPU_arch v7 (ARMv7) is above ARMv6KZ; Tag_THUMB_ISA_use Thumb-2 is "
        "not available on ARMv6 (Thumb-1 only); Tag_FP_arch VFPv3-D16 is above VFPv2 (built for "
        "ARMv7, VFPv3-D16, Thumb-2, hard-float, needs /lib/ld-linux-armhf.so.3)");
}

TEST_CASE("files for other machines, classes, byte orders or ABIs are refused", "[elf]") {
  CHECK(refusal(x86_64_image()) == "built for x86-64 (e_machine 62), not 32-bit ARM");

  Image32 aarch64;
  aarch64.machine = EM_AARCH64;
  CHECK(refusal(aarch64.build()).find("AArch64") != std::string::npos);

  Bytes arm64class = x86_64_image();
  arm64class[18] = EM_ARM;  // e_machine, little-endian
  CHECK(refusal(arm64class).find("ELFCLASS64") != std::string::npos);

  Bytes big = arm_with_attributes(armv6kz_vfp());
  big[EI_DATA] = ELFDATA2MSB;
  std::swap(big[18], big[19]);  // e_machine in the file's byte order
  CHECK(refusal(big).find("big-endian") != std::string::npos);

  Image32 old_abi;
  old_abi.flags = 0x04000000;
  old_abi.sections = {{".ARM.attributes", armv6kz_vfp()}};
  CHECK(refusal(old_abi.build()).find("EABI version 4") != std::string::npos);
}

TEST_CASE("the host target accepts only the host's own machine", "[elf]") {
#if defined(__x86_64__)
  auto v = elf::check_elf(x86_64_image(), Target::host);
  CHECK(v.status == Status::runs);
  auto arm = elf::check_elf(arm_with_attributes(armv6kz_vfp()), Target::host);
  CHECK(arm.status == Status::refused);
  CHECK(elf::describe(arm, Target::host) ==
        "does not run on this host (x86-64): built for 32-bit ARM (e_machine 40), this host is x86-64");
#elif defined(__arm__)
  // On the Pi (or under qemu-arm1176) host means armv6.
  CHECK(elf::check_elf(arm_with_attributes(armv6kz_vfp()), Target::host).status == Status::runs);
  CHECK(elf::check_elf(x86_64_image(), Target::host).status == Status::refused);
  CHECK(elf::target_name(Target::host) == "ARMv6");
#endif
  CHECK(elf::parse_target("armv6") == Target::armv6);
  CHECK(elf::parse_target("host") == Target::host);
  CHECK_FALSE(elf::parse_target("armv7"));
}

TEST_CASE("this test binary itself is judged by its real headers", "[elf]") {
  Bytes self = read_all("/proc/self/exe");
  REQUIRE(self.size() > 1000);
  auto v = armv6(self);
#if defined(__arm__)
  // The armv6 build is ARMv6KZ thanks to src/compat/atomic_armv6k.c.
  INFO(elf::describe(v, Target::armv6));
  CHECK(v.status == Status::runs);
#elif defined(__x86_64__)
  CHECK(v.status == Status::refused);
  CHECK(v.detail.find("x86-64") != std::string::npos);
  CHECK(elf::check_elf(self, Target::host).status == Status::runs);
#endif
}

TEST_CASE("Tag_Section/Tag_Symbol lists, other vendors and unknown tags are skipped", "[elf]") {
  Bytes section_scoped;
  put_uleb(section_scoped, 3);  // section numbers 3 and 200, then 0
  put_uleb(section_scoped, 200);
  put_uleb(section_scoped, 0);
  Bytes v7 = attrs({{6, 10}, {9, 2}});
  section_scoped.insert(section_scoped.end(), v7.begin(), v7.end());

  Bytes file_list = attrs({{6, 7}, {10, 2}});
  put_uleb(file_list, 5);  // Tag_CPU_name
  put_str(file_list, "6KZ");
  put_uleb(file_list, 32);  // Tag_compatibility: flag, vendor
  put_uleb(file_list, 0);
  put_str(file_list, "");
  put_uleb(file_list, 65);  // Tag_also_compatible_with: Tag_CPU_arch Pre-v4, NUL
  put_uleb(file_list, 6);
  put_uleb(file_list, 0);
  file_list.push_back(0);
  put_uleb(file_list, 1001);  // unknown odd tag: a string
  put_str(file_list, "whatever");
  put_uleb(file_list, 1000);  // unknown even tag: a number
  put_uleb(file_list, 300);

  Bytes section{'A'};
  for (const Bytes& sub : {subsection("gnu", Bytes{1, 2, 3, 0, 9}),
                           subsection("aeabi", [&] {
                             Bytes c = subsub(2, section_scoped);
                             Bytes f = subsub(1, file_list);
                             Bytes s = subsub(3, section_scoped);
                             c.insert(c.end(), f.begin(), f.end());
                             c.insert(c.end(), s.begin(), s.end());
                             return c;
                           }())})
    section.insert(section.end(), sub.begin(), sub.end());

  auto a = elf::parse_arm_attributes(section);
  CHECK(a.has_aeabi);
  CHECK(a.cpu_arch == 7u);
  CHECK(a.cpu_name == "6KZ");
  CHECK(a.fp_arch == 2u);
  CHECK_FALSE(a.thumb_isa_use);
  CHECK(armv6(arm_with_attributes(section)).status == Status::runs);
}

TEST_CASE("Go binaries are judged by GOARM in their build info", "[elf]") {
  auto go = [](std::string_view goarm_line, std::uint8_t flags = 2) {
    Image32 img;
    img.sections = {{".text", Bytes(16, 0)},
                    {".go.buildinfo", go_buildinfo("go1.19.8", go_modinfo(goarm_line), flags)}};
    return armv6(img.build());
  };
  auto six = go("build\tGOARM=6\n");
  CHECK(six.status == Status::runs);
  CHECK(elf::describe(six, Target::armv6) == "runs on ARMv6 (Go go1.19.8, GOARM=6)");
  CHECK(go("build\tGOARM=5\n").status == Status::runs);
  CHECK(go("build\tGOARM=6,softfloat\n").status == Status::runs);

  auto seven = go("build\tGOARM=7\n");
  CHECK(seven.status == Status::refused);
  CHECK(seven.detail == "Go build setting GOARM=7 (ARMv7, VFPv3) is above ARMv6; rebuild with GOARM=6");

  auto none = go("");
  CHECK(none.status == Status::cannot_judge);
  CHECK(none.detail == "Go build info (go1.19.8) records no GOARM");
  CHECK(go("build\tGOARM=6\n", 0).status == Status::cannot_judge);  // pre-1.18 pointer format

  auto info = elf::parse_go_buildinfo(go_buildinfo("go1.21.0", go_modinfo("build\tGOARM=7\n")));
  REQUIRE(info);
  CHECK(info->go_version == "go1.21.0");
  CHECK(info->goarm == "7");
  CHECK(info->goarch == "arm");
}

TEST_CASE("an ARM ELF with neither attributes nor Go build info cannot be judged", "[elf]") {
  Image32 img;
  img.sections = {{".text", Bytes(16, 0)}};
  auto v = armv6(img.build());
  CHECK(v.status == Status::cannot_judge);
  CHECK(elf::describe(v, Target::armv6) ==
        "cannot judge whether it runs on ARMv6: no aeabi build attributes (.ARM.attributes) and no "
        "Go build info");
  CHECK_FALSE(v.acceptable(false));  // fail closed
  CHECK(v.acceptable(true));
}

TEST_CASE("malformed ELF files get a clear error, not a crash", "[elf]") {
  auto malformed = [](const Bytes& b) { return refusal(b, Status::malformed); };
  CHECK(malformed({}) == "file too short for an ELF header (0 bytes)");
  CHECK(malformed(Bytes(64, 'x')) == "no ELF magic (\\x7fELF) at the start");
  CHECK(malformed(Bytes{'!', '<', 'a', 'r', 'c', 'h', '>', '\n'}) == "no ELF magic (\\x7fELF) at the start");
  CHECK(malformed(Bytes{0x7f, 'E', 'L', 'F', 1}) == "file too short for an ELF header (5 bytes)");

  Bytes good = arm_with_attributes(armv6kz_vfp());
  Bytes header_only(good.begin(), good.begin() + 30);
  CHECK(malformed(header_only) == "file too short for an ELF header (30 of 52 bytes)");

  Bytes bad_class = good;
  bad_class[EI_CLASS] = 7;
  CHECK(malformed(bad_class) == "EI_CLASS 7 is neither 32- nor 64-bit");

  // Cut before the section headers: the table lies past the end.
  Bytes truncated(good.begin(), good.end() - 20);
  CHECK(malformed(truncated).find("section header table") != std::string::npos);

  auto patch16 = [](Bytes b, std::size_t off, std::uint16_t v) {
    b[off] = static_cast<std::uint8_t>(v);
    b[off + 1] = static_cast<std::uint8_t>(v >> 8);
    return b;
  };
  auto patch32 = [](Bytes b, std::size_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[off + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
    return b;
  };
  CHECK(malformed(patch16(good, offsetof(Elf32_Ehdr, e_shnum), 65000)) ==
        "section header table (65000 entries at offset " +
            [&] {
              char buf[32];
              std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(good.size() - 4 * sizeof(Elf32_Shdr)));
              return std::string(buf);
            }() +
            ") lies beyond the end of the " + std::to_string(good.size()) + "-byte file");
  CHECK(malformed(patch16(good, offsetof(Elf32_Ehdr, e_shstrndx), 9)) ==
        "e_shstrndx 9 is not a section (there are 4)");
  CHECK(malformed(patch32(good, offsetof(Elf32_Ehdr, e_shoff), 0xfffffff0)).find("beyond the end") !=
        std::string::npos);
  CHECK(malformed(patch16(good, offsetof(Elf32_Ehdr, e_shentsize), 12)) == "e_shentsize 12 is not 40");

  // A section whose contents run past the end of the file.
  std::size_t attr_shdr = good.size() - 2 * sizeof(Elf32_Shdr);  // null, .text, .ARM.attributes, .shstrtab
  CHECK(malformed(patch32(good, attr_shdr + offsetof(Elf32_Shdr, sh_size), 0x7fffffff)).find("section 2") !=
        std::string::npos);

  // Damaged build attributes.
  Bytes long_sub = armv6kz_vfp();
  long_sub[1] = 0xff;  // subsection length far beyond the section
  CHECK(malformed(arm_with_attributes(long_sub)).find("claims") != std::string::npos);

  Bytes overlong{'A'};
  Bytes list{6};
  for (int i = 0; i < 11; ++i) list.push_back(0x80);
  list.push_back(0);
  Bytes sub = subsection("aeabi", subsub(1, list));
  overlong.insert(overlong.end(), sub.begin(), sub.end());
  CHECK(malformed(arm_with_attributes(overlong)) ==
        "attribute tag 6: overlong ULEB128 (more than 10 bytes)");

  Bytes version_b = armv6kz_vfp();
  version_b[0] = 'B';
  CHECK(malformed(arm_with_attributes(version_b)) == ".ARM.attributes format version 0x42 is not 'A'");

  Bytes unterminated{'A'};
  Bytes name_list{5, 'v', '6'};  // Tag_CPU_name without its NUL
  Bytes sub2 = subsection("aeabi", subsub(1, name_list));
  unterminated.insert(unterminated.end(), sub2.begin(), sub2.end());
  CHECK(malformed(arm_with_attributes(unterminated)) == "attribute tag 5: string is not NUL-terminated");

  Bytes short_subsub{'A'};
  Bytes inner{1, 2, 0, 0, 0};  // Tag_File claiming 2 bytes, less than its own header
  Bytes sub3 = subsection("aeabi", inner);
  short_subsub.insert(short_subsub.end(), sub3.begin(), sub3.end());
  CHECK(malformed(arm_with_attributes(short_subsub)).find("claims 2 bytes") != std::string::npos);

  Image32 go;
  Bytes info = go_buildinfo("go1.19.8", "x");
  info[32] = 0x7f;  // version length far beyond the section
  go.sections = {{".go.buildinfo", info}};
  CHECK(malformed(go.build()) == "Go version: length 127 runs past the section end");
}

TEST_CASE("every truncation of a valid file is malformed or judged, never out of bounds", "[elf]") {
  Image32 img;
  img.interpreter = "/lib/ld-linux.so.3";
  img.sections = {{".ARM.attributes", armv6kz_vfp()},
                  {".go.buildinfo", go_buildinfo("go1.19.8", go_modinfo("build\tGOARM=6\n"))}};
  Bytes full = img.build();
  REQUIRE(armv6(full).status == Status::runs);
  for (std::size_t n = 0; n < full.size(); ++n) {
    Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    auto v = armv6(cut);
    INFO("length " << n << ": " << elf::describe(v, Target::armv6));
    CHECK(v.status == Status::malformed);
  }
}

TEST_CASE("check_file reads regular files only, with a size cap", "[elf]") {
  TempDir dir;
  auto path = dir.write("app", arm_with_attributes(armv6kz_vfp()));
  CHECK(elf::check_file(path, Target::armv6).status == Status::runs);
  auto big = elf::check_file(path, Target::armv6, 100);
  CHECK(big.status == Status::unreadable);
  CHECK(big.detail == "larger than the 100-byte limit");
  CHECK(elf::check_file(dir.path.string(), Target::armv6).detail == "is a directory");
  CHECK(elf::check_file("/dev/null", Target::armv6).detail == "not a regular file");
  auto missing = elf::check_file((dir.path / "nope").string(), Target::armv6);
  CHECK(missing.status == Status::unreadable);
  CHECK(elf::describe(missing, Target::armv6) == "cannot read: No such file or directory");
}

// VmHWM (peak resident set) of this process, in KiB; -1 if unknown.
long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// How much a forked child's peak resident memory grows while it runs fn, in
// KiB. The child resets its high-water mark first (clear_refs 5), so earlier
// peaks of this test process cannot hide the growth.
long child_peak_growth_kib(const std::function<void()>& fn) {
  std::string out = pisec::testing::run_in_child([&] {
    long growth = -1;
    int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && ::write(fd, "5", 1) == 1) {
      long before = peak_rss_kib();
      fn();
      long after = peak_rss_kib();
      if (before >= 0 && after >= 0) growth = after - before;
    }
    return std::to_string(growth);
  });
  REQUIRE_FALSE(out.empty());
  return std::stol(out);
}

TEST_CASE("check_file reads headers and judged sections only: a 100 MiB ELF costs no 100 MiB", "[elf]") {
  TempDir dir;
  auto path = dir.write("big", arm_with_attributes(armv6kz_vfp()));
  // Sparse padding behind the section headers: a valid 100 MiB file that
  // takes no disk space.
  REQUIRE(::truncate(path.c_str(), 100L * 1024 * 1024) == 0);
  long growth = child_peak_growth_kib([&] { (void)elf::check_file(path, Target::armv6); });
  INFO("peak RSS grew by " << growth << " KiB while judging a 100 MiB file");
  REQUIRE(growth >= 0);
#if defined(__SANITIZE_ADDRESS__)
  // ASan's shadow memory and quarantine of freed blocks are resident too.
  WARN("skipped: the peak RSS bound (sanitized build: grew by " << growth << " KiB)");
#else
  CHECK(growth < 16 * 1024);
#endif
  CHECK(elf::check_file(path, Target::armv6).status == Status::runs);
}

TEST_CASE("a judged section too large to read is refused, not read", "[elf]") {
  Bytes huge = armv6kz_vfp();
  huge.resize(elf::max_section_bytes + 1);
  CHECK(refusal(arm_with_attributes(huge), Status::malformed) ==
        ".ARM.attributes is 1048577 bytes, more than the 1048576 elfcheck reads");
}

TEST_CASE("an I/O failure under the reader is unreadable, not malformed", "[elf]") {
  // A reader whose file shrinks after its size was taken, as a file cut short mid-check.
  struct Shrinking final : elf::Reader {
    Bytes bytes = arm_with_attributes(armv6kz_vfp());
    std::uint64_t size() const override { return bytes.size(); }
    void read(std::uint64_t offset, std::span<std::uint8_t> out) const override {
      if (offset + out.size() > 64) throw elf::ReadError("file shrank while being read");
      std::memcpy(out.data(), bytes.data() + offset, out.size());
    }
  } file;
  auto v = elf::check_elf(file, Target::armv6);
  CHECK(v.status == Status::unreadable);
  CHECK(v.detail == "file shrank while being read");
}

TEST_CASE("arch gate refuses an ARMv7 payload under target armv6, with the reason", "[elf]") {
  TempDir root;
  root.write("srv/app", arm_with_attributes(aeabi_file(attrs({{6, 10}, {9, 2}, {10, 3}}))));
  config::ArchGate arch;
  config::Payload payload;
  payload.rootfs = root.path.string();
  payload.command = {"/srv/app", "--port", "8080"};
  auto r = run_gate(arch, payload, no_manifest());
  CHECK_FALSE(r.outcome.passed);
  CHECK(r.outcome.detail.rfind("payload /srv/app: does not run on ARMv6: Tag_CPU_arch v7 (ARMv7) is above ARMv6KZ", 0) == 0);
}

TEST_CASE("arch gate passes an ARMv6 payload and every manifest ELF", "[elf]") {
  TempDir root;
  root.write("usr/bin/app", arm_with_attributes(armv6kz_vfp()));
  TempDir boot;
  boot.write("payload/app", arm_with_attributes(armv6kz_vfp()));
  boot.write("payload/helper", arm_with_attributes(aeabi_file(attrs({{6, 4}}))));
  boot.write("boot/kernel.img", std::string("not an ELF, skipped"));
  std::string hash(64, 'a');
  auto manifest = boot.write("MANIFEST", hash + "  payload/app\n" + hash + "  payload/helper\n" + hash +
                                             "  boot/kernel.img\n");
  config::ArchGate arch;
  config::Payload payload;
  payload.rootfs = root.path.string();
  payload.command = {"/usr/bin/app"};
  config::IntegrityGate integrity;
  integrity.manifest = manifest;
  integrity.root = boot.path.string();
  auto r = run_gate(arch, payload, integrity);
  CHECK(r.outcome.passed);
  CHECK(r.outcome.detail == "3 ELF files run on ARMv6");

  SECTION("an ARMv7 file in the manifest fails the gate, named") {
    boot.write("payload/helper", arm_with_attributes(aeabi_file(attrs({{6, 10}}))));
    auto bad = run_gate(arch, payload, integrity);
    CHECK_FALSE(bad.outcome.passed);
    CHECK(bad.outcome.detail ==
          "payload/helper: does not run on ARMv6: Tag_CPU_arch v7 (ARMv7) is above ARMv6KZ (built for "
          "ARMv7, no FP, no Thumb, soft-float)");
  }
  SECTION("an unreadable manifest line fails closed") {
    boot.write("MANIFEST", std::string("deadbeef  payload/app\n"));
    auto bad = run_gate(arch, payload, integrity);
    CHECK_FALSE(bad.outcome.passed);
    // The integrity gate's own parser, with its message.
    CHECK_THAT(bad.outcome.detail, Catch::StartsWith("manifest: " + manifest + ":1: "));
  }
}

TEST_CASE("arch gate follows a script to its interpreter and checks a dynamic payload's loader", "[elf]") {
  TempDir root;
  root.write("bin/sh", arm_with_attributes(aeabi_file(attrs({{6, 10}}))));
  root.write("srv/run.sh", std::string("#!/bin/sh -e\nexec /srv/app\n"));
  config::ArchGate arch;
  config::Payload payload;
  payload.rootfs = root.path.string();
  payload.command = {"/srv/run.sh"};
  auto script = run_gate(arch, payload, no_manifest());
  CHECK_FALSE(script.outcome.passed);
  CHECK(script.outcome.detail.rfind("payload /srv/run.sh -> /bin/sh: does not run on ARMv6: Tag_CPU_arch v7", 0) == 0);

  Image32 dynamic;
  dynamic.interpreter = "/lib/ld-linux-armhf.so.3";
  dynamic.flags |= EF_ARM_ABI_FLOAT_HARD;
  dynamic.sections = {{".ARM.attributes", aeabi_file(attrs({{6, 7}, {10, 2}, {28, 1}}))}};
  root.write("srv/app", dynamic.build());
  payload.command = {"/srv/app"};
  auto no_loader = run_gate(arch, payload, no_manifest());
  CHECK_FALSE(no_loader.outcome.passed);
  CHECK(no_loader.outcome.detail == "payload /srv/app: needs program interpreter /lib/ld-linux-armhf.so.3, "
                                    "which is missing under " + root.path.string());
  root.write("lib/ld-linux-armhf.so.3", arm_with_attributes(armv6kz_vfp()));
  CHECK(run_gate(arch, payload, no_manifest()).outcome.passed);
}

TEST_CASE("arch gate: unknown files fail closed unless allowed; missing payloads fail", "[elf]") {
  TempDir root;
  Image32 bare;
  bare.sections = {{".text", Bytes(8, 0)}};
  root.write("app", bare.build());
  config::ArchGate arch;
  config::Payload payload;
  payload.rootfs = root.path.string();
  payload.command = {"/app"};
  auto strict = run_gate(arch, payload, no_manifest());
  CHECK_FALSE(strict.outcome.passed);
  CHECK(strict.outcome.detail.find("cannot judge") != std::string::npos);
  arch.allow_unknown = true;
  auto lenient = run_gate(arch, payload, no_manifest());
  CHECK(lenient.outcome.passed);
  CHECK(lenient.outcome.detail == "0 ELF files run on ARMv6, 1 not judged (allow_unknown)");

  payload.command = {"/nothere"};
  auto missing = run_gate(arch, payload, no_manifest());
  CHECK_FALSE(missing.outcome.passed);
  CHECK(missing.outcome.detail == "payload /nothere: cannot read: No such file or directory");
}

TEST_CASE("arch gate does not report after cancel()", "[elf]") {
  TempDir root;
  root.write("app", arm_with_attributes(armv6kz_vfp()));
  config::Payload payload;
  payload.rootfs = root.path.string();
  payload.command = {"/app"};
  boost::asio::io_context io;
  auto gate = elf::make_arch_gate(config::ArchGate{}, payload, no_manifest());
  bool called = false;
  gate->start(io, [&](gates::Outcome) { called = true; });
  gate->cancel();
  io.run();
  CHECK_FALSE(called);
}
