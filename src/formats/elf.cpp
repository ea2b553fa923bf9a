// elfcheck's decision: pure functions over one ELF file behind a Reader. Only
// the headers and the sections judged by are read (FileView, a small block
// cache), and every read is bounds-checked first (FileView, ByteView), so
// damaged input becomes a FormatError and never an out-of-bounds read.
#include <elf.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "pisec/formats.hpp"

namespace pisec::elf {

namespace {

std::string hex(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), digits[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  return "0x" + out;
}

// Bounds-checked reads of little- or big-endian integers; `what` names the
// field in the error message.
class ByteView {
 public:
  ByteView(std::span<const std::uint8_t> bytes, bool little_endian)
      : bytes_(bytes), little_(little_endian) {}

  std::size_t size() const { return bytes_.size(); }

  std::uint64_t uint(std::uint64_t offset, std::size_t width, const char* what) const {
    require(offset, width, what);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) {
      std::size_t at = static_cast<std::size_t>(offset) + (little_ ? width - 1 - i : i);
      v = (v << 8) | bytes_[at];
    }
    return v;
  }
  std::uint16_t u16(std::uint64_t offset, const char* what) const {
    return static_cast<std::uint16_t>(uint(offset, 2, what));
  }
  std::uint32_t u32(std::uint64_t offset, const char* what) const {
    return static_cast<std::uint32_t>(uint(offset, 4, what));
  }

  std::span<const std::uint8_t> slice(std::uint64_t offset, std::uint64_t length,
                                      const std::string& what) const {
    if (offset > bytes_.size() || length > bytes_.size() - offset)
      throw FormatError(what + " (offset " + hex(offset) + ", " + std::to_string(length) +
                        " bytes) lies beyond the end of the " + std::to_string(bytes_.size()) +
                        "-byte file");
    return bytes_.subspan(static_cast<std::size_t>(offset), static_cast<std::size_t>(length));
  }

 private:
  void require(std::uint64_t offset, std::size_t width, const char* what) const {
    if (offset > bytes_.size() || width > bytes_.size() - offset)
      throw FormatError(std::string(what) + " at offset " + hex(offset) +
                        " lies beyond the end of the " + std::to_string(bytes_.size()) +
                        "-byte file");
  }

  std::span<const std::uint8_t> bytes_;
  bool little_;
};

// The same bounds-checked reads over a whole file behind a Reader, through a
// few cached 4 KiB blocks: header tables and names are read field by field.
class FileView {
 public:
  FileView(const Reader& file, bool little_endian) : file_(file), size_(file.size()), little_(little_endian) {}

  std::uint64_t size() const { return size_; }

  std::uint64_t uint(std::uint64_t offset, std::size_t width, const char* what) const {
    if (offset > size_ || width > size_ - offset)
      throw FormatError(std::string(what) + " at offset " + hex(offset) + " lies beyond the end of the " +
                        std::to_string(size_) + "-byte file");
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v = (v << 8) | byte(offset + (little_ ? width - 1 - i : i));
    return v;
  }

  // Checks that length bytes at offset lie inside the file, without reading them.
  void require(std::uint64_t offset, std::uint64_t length, const std::string& what) const {
    if (offset > size_ || length > size_ - offset)
      throw FormatError(what + " (offset " + hex(offset) + ", " + std::to_string(length) +
                        " bytes) lies beyond the end of the " + std::to_string(size_) + "-byte file");
  }

  // The contents of a section elfcheck judges by, refused above max_section_bytes.
  std::vector<std::uint8_t> contents(std::uint64_t offset, std::uint64_t length, const std::string& what) const {
    require(offset, length, what);
    if (length > max_section_bytes)
      throw FormatError(what + " is " + std::to_string(length) + " bytes, more than the " +
                        std::to_string(max_section_bytes) + " elfcheck reads");
    std::vector<std::uint8_t> out(static_cast<std::size_t>(length));
    if (!out.empty()) file_.read(offset, out);
    return out;
  }

  std::uint8_t byte(std::uint64_t at) const {
    std::uint64_t base = at / block_size * block_size;
    Block* victim = &blocks_[0];
    for (auto& b : blocks_) {
      if (b.valid && b.base == base) {
        b.used = ++clock_;
        return b.bytes[static_cast<std::size_t>(at - base)];
      }
      if (!b.valid || b.used < victim->used) victim = &b;
    }
    victim->valid = false;
    victim->base = base;
    file_.read(base, std::span(victim->bytes.data(), static_cast<std::size_t>(std::min(block_size, size_ - base))));
    victim->valid = true;
    victim->used = ++clock_;
    return victim->bytes[static_cast<std::size_t>(at - base)];
  }

 private:
  static constexpr std::uint64_t block_size = 4096;
  struct Block {
    bool valid = false;
    std::uint64_t base = 0, used = 0;
    std::array<std::uint8_t, block_size> bytes{};
  };
  const Reader& file_;
  std::uint64_t size_;
  bool little_;
  // Four blocks: the section headers, the name table and the program headers
  // are walked in turn without evicting each other.
  mutable std::array<Block, 4> blocks_{};
  mutable std::uint64_t clock_ = 0;
};

// ULEB128 as used by build attributes and Go's uvarint. More than ten bytes,
// or a value that does not fit 64 bits, is an overlong encoding.
std::uint64_t read_uleb128(std::span<const std::uint8_t> in, std::size_t& pos, const char* what) {
  std::uint64_t value = 0;
  for (unsigned shift = 0, count = 0;; shift += 7, ++count) {
    if (pos >= in.size()) throw FormatError(std::string(what) + ": ULEB128 runs past the end");
    if (count == 10) throw FormatError(std::string(what) + ": overlong ULEB128 (more than 10 bytes)");
    std::uint8_t byte = in[pos++];
    std::uint64_t low = byte & 0x7fu;
    if (shift == 63 && low > 1) throw FormatError(std::string(what) + ": ULEB128 overflows 64 bits");
    value |= low << shift;
    if ((byte & 0x80u) == 0) return value;
  }
}

std::uint32_t read_uleb32(std::span<const std::uint8_t> in, std::size_t& pos, const char* what) {
  std::uint64_t v = read_uleb128(in, pos, what);
  if (v > 0xffffffffu) throw FormatError(std::string(what) + ": value " + std::to_string(v) + " too large");
  return static_cast<std::uint32_t>(v);
}

// A NUL-terminated byte string starting at pos; pos moves past the NUL.
std::string read_ntbs(std::span<const std::uint8_t> in, std::size_t& pos, const std::string& what) {
  for (std::size_t end = pos; end < in.size(); ++end) {
    if (in[end] != 0) continue;
    std::string s(reinterpret_cast<const char*>(in.data() + pos), end - pos);
    pos = end + 1;
    return s;
  }
  throw FormatError(what + ": string is not NUL-terminated");
}

// --- .ARM.attributes -------------------------------------------------------

constexpr std::uint32_t Tag_File = 1, Tag_Section = 2, Tag_Symbol = 3;
constexpr std::uint32_t Tag_CPU_raw_name = 4, Tag_CPU_name = 5, Tag_CPU_arch = 6,
                        Tag_CPU_arch_profile = 7, Tag_THUMB_ISA_use = 9, Tag_FP_arch = 10,
                        Tag_WMMX_arch = 11, Tag_Advanced_SIMD_arch = 12, Tag_ABI_VFP_args = 28,
                        Tag_compatibility = 32, Tag_FP_HP_extension = 36, Tag_MPextension_use = 42,
                        Tag_DIV_use = 44, Tag_MVE_arch = 48, Tag_also_compatible_with = 65,
                        Tag_T2EE_use = 66, Tag_Virtualization_use = 68;

// Which tags carry a string: the named ones below 32, then odd numbers
// (the ABI's rule, so unknown future tags can still be skipped).
bool tag_is_string(std::uint32_t tag) {
  if (tag == Tag_CPU_raw_name || tag == Tag_CPU_name) return true;
  return tag >= 32 && (tag & 1u) != 0;
}

void store(ArmAttributes& a, std::uint32_t tag, std::uint32_t v) {
  switch (tag) {
    case Tag_CPU_arch: a.cpu_arch = v; break;
    case Tag_CPU_arch_profile: a.cpu_arch_profile = v; break;
    case Tag_THUMB_ISA_use: a.thumb_isa_use = v; break;
    case Tag_FP_arch: a.fp_arch = v; break;
    case Tag_WMMX_arch: a.wmmx_arch = v; break;
    case Tag_Advanced_SIMD_arch: a.advanced_simd = v; break;
    case Tag_ABI_VFP_args: a.vfp_args = v; break;
    case Tag_FP_HP_extension: a.fp_hp_extension = v; break;
    case Tag_MPextension_use: a.mp_extension = v; break;
    case Tag_DIV_use: a.div_use = v; break;
    case Tag_MVE_arch: a.mve_arch = v; break;
    case Tag_T2EE_use: a.t2ee_use = v; break;
    case Tag_Virtualization_use: a.virtualization = v; break;
    default: break;
  }
}

void parse_attribute_list(std::span<const std::uint8_t> in, ArmAttributes& out) {
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::uint32_t tag = read_uleb32(in, pos, "attribute tag");
    std::string what = "attribute tag " + std::to_string(tag);
    if (tag == Tag_compatibility) {
      read_uleb128(in, pos, what.c_str());
      read_ntbs(in, pos, what);
    } else if (tag == Tag_also_compatible_with) {
      // A nested tag/value pair, then a NUL: the value may itself be 0.
      std::uint32_t inner = read_uleb32(in, pos, what.c_str());
      if (tag_is_string(inner)) {
        read_ntbs(in, pos, what);
      } else {
        read_uleb128(in, pos, what.c_str());
        if (pos >= in.size() || in[pos] != 0) throw FormatError(what + ": missing terminating NUL");
        ++pos;
      }
    } else if (tag_is_string(tag)) {
      std::string s = read_ntbs(in, pos, what);
      if (tag == Tag_CPU_name) out.cpu_name = s;
    } else {
      store(out, tag, read_uleb32(in, pos, what.c_str()));
    }
  }
}

// --- ELF structure ---------------------------------------------------------

struct Header {
  bool is64 = false;
  bool little = true;
  std::uint16_t type = 0, machine = 0;
  std::uint32_t flags = 0;
  std::uint64_t phoff = 0, shoff = 0;
  std::uint16_t phentsize = 0, phnum = 0, shentsize = 0, shnum = 0, shstrndx = 0;
};

struct Section {
  std::uint32_t type = 0;
  std::uint64_t offset = 0, size = 0;
};

// Only what the judgement needs: a file with a million sections costs no more.
struct Layout {
  std::optional<Section> attributes;  // first ".ARM.attributes" by name or SHT_ARM_ATTRIBUTES by type
  std::optional<Section> go_buildinfo;  // first ".go.buildinfo"
  std::string interpreter;
};

// Reads field `member` of the 32- or 64-bit struct at `base`, using <elf.h>
// for the layout and the file's byte order for the value.
#define PISEC_FIELD(view, is64, base, S32, S64, member)                                       \
  ((is64) ? (view).uint((base) + offsetof(S64, member), sizeof(S64::member), #member)        \
          : (view).uint((base) + offsetof(S32, member), sizeof(S32::member), #member))

Header read_header(const FileView& v, bool is64) {
  Header h;
  h.is64 = is64;
  std::size_t need = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
  if (v.size() < need)
    throw FormatError("file too short for an ELF header (" + std::to_string(v.size()) + " of " +
                      std::to_string(need) + " bytes)");
#define H(member) PISEC_FIELD(v, is64, 0, Elf32_Ehdr, Elf64_Ehdr, member)
  h.type = static_cast<std::uint16_t>(H(e_type));
  h.machine = static_cast<std::uint16_t>(H(e_machine));
  h.flags = static_cast<std::uint32_t>(H(e_flags));
  h.phoff = H(e_phoff);
  h.shoff = H(e_shoff);
  h.phentsize = static_cast<std::uint16_t>(H(e_phentsize));
  h.phnum = static_cast<std::uint16_t>(H(e_phnum));
  h.shentsize = static_cast<std::uint16_t>(H(e_shentsize));
  h.shnum = static_cast<std::uint16_t>(H(e_shnum));
  h.shstrndx = static_cast<std::uint16_t>(H(e_shstrndx));
#undef H
  return h;
}

// Checks that a table of count entries of entsize bytes at offset fits.
void check_table(const FileView& v, std::uint64_t offset, std::uint64_t count, std::size_t entsize,
                 const char* what) {
  if (offset > v.size() || count > (v.size() - offset) / entsize)
    throw FormatError(std::string(what) + " (" + std::to_string(count) +
                      (count == 1 ? " entry" : " entries") + " at offset " +
                      hex(offset) + ") lies beyond the end of the " + std::to_string(v.size()) +
                      "-byte file");
}

// Whether the NUL-terminated name at pos in the table equals want.
bool name_is(const FileView& v, std::uint64_t table, std::uint64_t table_size, std::uint64_t pos,
             std::string_view want) {
  if (want.size() >= table_size - pos) return false;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (v.byte(table + pos + i) != static_cast<std::uint8_t>(want[i])) return false;
  return v.byte(table + pos + want.size()) == 0;
}

Layout read_layout(const FileView& v, const Header& h) {
  Layout out;
  const bool is64 = h.is64;
  const std::size_t shsize = is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
  const std::size_t phsize = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);

  // Section headers, with the extended numbering of section 0 for >= 0xff00
  // sections or a string table index beyond SHN_LORESERVE.
  std::uint64_t shnum = h.shnum;
  std::uint64_t shstrndx = h.shstrndx;
  std::uint64_t ph_extended = 0;
  if (h.shoff != 0) {
    if (h.shentsize != shsize)
      throw FormatError("e_shentsize " + std::to_string(h.shentsize) + " is not " +
                        std::to_string(shsize));
    check_table(v, h.shoff, 1, shsize, "section header table");
#define S(i, member) PISEC_FIELD(v, is64, h.shoff + (i) * shsize, Elf32_Shdr, Elf64_Shdr, member)
    if (shnum == 0) shnum = S(0, sh_size);
    if (shstrndx == SHN_XINDEX) shstrndx = S(0, sh_link);
    ph_extended = S(0, sh_info);
    check_table(v, h.shoff, shnum, shsize, "section header table");
    auto section = [&](std::uint64_t i) {
      Section s;
      s.type = static_cast<std::uint32_t>(S(i, sh_type));
      s.offset = S(i, sh_offset);
      s.size = S(i, sh_size);
      return s;
    };
    // Every section must lie in the file (a truncated file shows here); only
    // the ones judged by are read later.
    for (std::uint64_t i = 0; i < shnum; ++i) {
      Section s = section(i);
      if (s.type != SHT_NOBITS && s.type != SHT_NULL) v.require(s.offset, s.size, "section " + std::to_string(i));
    }
    std::optional<Section> names;
    std::uint64_t last_nul = 0;  // a name is NUL-terminated iff it starts at or before the table's last NUL
    if (shstrndx != SHN_UNDEF) {
      if (shstrndx >= shnum)
        throw FormatError("e_shstrndx " + std::to_string(shstrndx) + " is not a section (there are " +
                          std::to_string(shnum) + ")");
      names = section(shstrndx);
      if (names->type != SHT_STRTAB)
        throw FormatError("e_shstrndx " + std::to_string(shstrndx) + " is not a string table");
      v.require(names->offset, names->size, "section name table");
      last_nul = names->size;  // none yet
      for (std::uint64_t at = names->size; at-- > 0;)
        if (v.byte(names->offset + at) == 0) {
          last_nul = at;
          break;
        }
    }
    for (std::uint64_t i = 0; i < shnum; ++i) {
      Section s = section(i);
      bool is_attributes = s.type == SHT_ARM_ATTRIBUTES, is_buildinfo = false;
      if (names) {
        std::uint64_t pos = static_cast<std::uint32_t>(S(i, sh_name));
        if (pos >= names->size)
          throw FormatError("section " + std::to_string(i) + ": name offset " + hex(pos) +
                            " is outside the section name table");
        if (last_nul == names->size || pos > last_nul)
          throw FormatError("section " + std::to_string(i) + " name: string is not NUL-terminated");
        is_attributes = is_attributes || name_is(v, names->offset, names->size, pos, ".ARM.attributes");
        is_buildinfo = name_is(v, names->offset, names->size, pos, ".go.buildinfo");
      }
      if (is_attributes && !out.attributes) out.attributes = s;
      if (is_buildinfo && !out.go_buildinfo) out.go_buildinfo = s;
    }
#undef S
  } else if (h.shnum != 0) {
    throw FormatError("e_shnum is " + std::to_string(h.shnum) + " but e_shoff is 0");
  }

  // Program headers: only PT_INTERP is read, but every segment must lie in
  // the file (a truncated file shows here).
  if (h.phoff != 0) {
    if (h.phentsize != phsize)
      throw FormatError("e_phentsize " + std::to_string(h.phentsize) + " is not " +
                        std::to_string(phsize));
    std::uint64_t phnum = h.phnum == PN_XNUM ? ph_extended : h.phnum;
    check_table(v, h.phoff, phnum, phsize, "program header table");
    for (std::uint64_t i = 0; i < phnum; ++i) {
#define P(member) PISEC_FIELD(v, is64, h.phoff + i * phsize, Elf32_Phdr, Elf64_Phdr, member)
      auto type = P(p_type);
      std::uint64_t offset = P(p_offset), filesz = P(p_filesz);
#undef P
      v.require(offset, filesz, "segment " + std::to_string(i));
      if (type != PT_INTERP) continue;
      // A path: read no more than PATH_MAX of it.
      std::vector<std::uint8_t> bytes =
          v.contents(offset, std::min<std::uint64_t>(filesz, max_interpreter_bytes), "PT_INTERP");
      std::size_t pos = 0;
      if (filesz > max_interpreter_bytes && std::find(bytes.begin(), bytes.end(), 0) == bytes.end())
        throw FormatError("PT_INTERP: no NUL-terminated path in its first " +
                          std::to_string(max_interpreter_bytes) + " bytes");
      out.interpreter = read_ntbs(bytes, pos, "PT_INTERP");
      if (out.interpreter.empty()) throw FormatError("PT_INTERP names an empty path");
    }
  }
  return out;
}
#undef PISEC_FIELD

std::string machine_name(std::uint16_t m) {
  switch (m) {
    case EM_386: return "x86 (i386)";
    case EM_X86_64: return "x86-64";
    case EM_ARM: return "32-bit ARM";
    case EM_AARCH64: return "AArch64 (64-bit ARM)";
    case EM_MIPS: return "MIPS";
    case EM_PPC: return "PowerPC";
    case EM_PPC64: return "PowerPC64";
    case EM_RISCV: return "RISC-V";
    case EM_S390: return "IBM S/390";
    case EM_SPARC: return "SPARC";
    case EM_SPARCV9: return "SPARC V9";
    case EM_68K: return "Motorola 68000";
    case EM_SH: return "SuperH";
    case EM_IA_64: return "IA-64";
    case 258: return "LoongArch";  // EM_LOONGARCH, newer than some <elf.h>
    default: return "machine " + std::to_string(m);
  }
}

// --- judging ---------------------------------------------------------------

constexpr std::uint32_t arch_v6KZ = 7, arch_v6K = 9;
constexpr std::array<const char*, 23> arch_names = {
    "Pre-v4", "v4",    "v4T",    "v5T",   "v5TE",          "v5TEJ",         "v6",   "v6KZ",
    "v6T2",   "v6K",   "v7",     "v6-M",  "v6S-M",         "v7E-M",         "v8-A", "v8-R",
    "v8-M.baseline", "v8-M.mainline", "v8.1-A", "v8.2-A", "v8.3-A", "v8.1-M.mainline", "v9-A"};

std::string arch_name(std::uint32_t a) {
  return a < arch_names.size() ? arch_names[a] : "#" + std::to_string(a);
}

std::string fp_name(std::uint32_t f) {
  static constexpr std::array<const char*, 9> names = {
      "no FP", "VFPv1", "VFPv2", "VFPv3", "VFPv3-D16", "VFPv4", "VFPv4-D16", "FP-ARMv8", "FPv8-D16"};
  return f < names.size() ? names[f] : "FP #" + std::to_string(f);
}

struct Judgement {
  std::vector<std::string> refusals;
  std::string profile;
};

void judge_attributes(const ArmAttributes& a, std::uint32_t e_flags, Judgement& j) {
  auto& no = j.refusals;
  std::uint32_t arch = a.cpu_arch.value_or(0);
  if (arch > arch_v6KZ && arch != arch_v6K)
    no.push_back("Tag_CPU_arch " + arch_name(arch) + " (ARM" + arch_name(arch) +
                 ") is above ARMv6KZ");
  std::uint32_t profile = a.cpu_arch_profile.value_or(0);
  if (profile == 'M' || profile == 'R')
    no.push_back(std::string("Tag_CPU_arch_profile ") + static_cast<char>(profile) +
                 " (" + (profile == 'M' ? "microcontroller" : "real-time") +
                 ") is not the ARM1176's application profile");
  std::uint32_t thumb = a.thumb_isa_use.value_or(0);
  if (thumb == 2) no.push_back("Tag_THUMB_ISA_use Thumb-2 is not available on ARMv6 (Thumb-1 only)");
  std::uint32_t fp = a.fp_arch.value_or(0);
  if (fp > 2) no.push_back("Tag_FP_arch " + fp_name(fp) + " is above VFPv2");
  if (a.advanced_simd.value_or(0) != 0)
    no.push_back("Tag_Advanced_SIMD_arch " + std::to_string(*a.advanced_simd) +
                 " (NEON) is not available on ARMv6");
  if (a.wmmx_arch.value_or(0) != 0) no.push_back("Tag_WMMX_arch: iWMMXt is not available");
  if (a.fp_hp_extension.value_or(0) != 0)
    no.push_back("Tag_FP_HP_extension: half-precision VFP is not available on VFPv2");
  if (a.mp_extension.value_or(0) != 0)
    no.push_back("Tag_MPextension_use: ARMv7 multiprocessing extensions are not available");
  if (a.div_use.value_or(0) == 2)
    no.push_back("Tag_DIV_use: SDIV/UDIV are not available on ARMv6");
  if (a.mve_arch.value_or(0) != 0) no.push_back("Tag_MVE_arch: M-profile vector extension");
  if (a.t2ee_use.value_or(0) != 0) no.push_back("Tag_T2EE_use: ThumbEE is not available");
  if ((a.virtualization.value_or(0) & 2u) != 0)
    no.push_back("Tag_Virtualization_use: virtualization extensions are not available");

  bool hard = a.vfp_args.value_or(0) == 1 || (e_flags & EF_ARM_ABI_FLOAT_HARD) != 0;
  j.profile = "ARM" + arch_name(arch) + ", " + fp_name(fp) + ", " +
              (thumb == 0 ? "no Thumb" : thumb == 2 ? "Thumb-2" : "Thumb-1") + ", " +
              (hard ? "hard-float" : "soft-float");
}

void judge_go(const GoBuildInfo& g, Judgement& j) {
  if (!g.goarch.empty() && g.goarch != "arm")
    j.refusals.push_back("Go build info says GOARCH=" + g.goarch);
  // Go 1.22 allows "6,softfloat"; only the number matters here.
  std::string level = g.goarm.substr(0, g.goarm.find(','));
  if (level == "7")
    j.refusals.push_back("Go build setting GOARM=7 (ARMv7, VFPv3) is above ARMv6; rebuild with GOARM=6");
  else if (level != "5" && level != "6")
    j.refusals.push_back("Go build setting GOARM=" + g.goarm + " is not one ARMv6 runs (5 or 6)");
  if (!j.profile.empty()) j.profile += "; ";
  j.profile += "Go " + g.go_version + ", GOARM=" + g.goarm;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

// The machine this binary was compiled for, for Target::host.
struct HostMachine {
  bool arm32;
  std::uint16_t machine;
  bool is64;
};
constexpr HostMachine host_machine() {
#if defined(__arm__)
  return {true, EM_ARM, false};
#elif defined(__x86_64__)
  return {false, EM_X86_64, true};
#elif defined(__aarch64__)
  return {false, EM_AARCH64, true};
#elif defined(__i386__)
  return {false, EM_386, false};
#elif defined(__riscv) && __riscv_xlen == 64
  return {false, EM_RISCV, true};
#else
  return {false, EM_NONE, false};
#endif
}

Verdict judge_arm(const FileView& v, const Header& h) {
  if (h.machine != EM_ARM)
    return {Status::refused,
            "built for " + machine_name(h.machine) + " (e_machine " + std::to_string(h.machine) +
                "), not 32-bit ARM",
            {}};
  if (h.is64) return {Status::refused, "ELFCLASS64: a 64-bit file, ARMv6 runs 32-bit code only", {}};
  if (!h.little)
    return {Status::refused, "big-endian (ELFDATA2MSB) ARM code; the Pi runs little-endian", {}};
  if (h.type != ET_EXEC && h.type != ET_DYN && h.type != ET_REL)
    return {Status::refused, "e_type " + std::to_string(h.type) + " is not a program, library or object", {}};
  std::uint32_t eabi = (h.flags & EF_ARM_EABIMASK) >> 24;
  if (eabi != 5)
    return {Status::refused,
            "EABI version " + std::to_string(eabi) + " (e_flags " + hex(h.flags) +
                "); Linux on the Pi runs EABI version 5",
            {}};

  Layout layout = read_layout(v, h);
  Judgement j;
  bool judged = false;
  if (const auto& s = layout.attributes) {
    ArmAttributes a = parse_arm_attributes(v.contents(s->offset, s->size, ".ARM.attributes"));
    if (a.has_aeabi) {
      judge_attributes(a, h.flags, j);
      judged = true;
    }
  }
  if (const auto& s = layout.go_buildinfo) {
    auto info = parse_go_buildinfo(v.contents(s->offset, s->size, ".go.buildinfo"));
    if (!info) return {Status::cannot_judge, "Go build info in the pre-Go 1.18 format", layout.interpreter};
    if (info->goarm.empty() && !judged)
      return {Status::cannot_judge, "Go build info (" + info->go_version + ") records no GOARM",
              layout.interpreter};
    if (!info->goarm.empty()) {
      judge_go(*info, j);
      judged = true;
    }
  }
  if (!judged)
    return {Status::cannot_judge, "no aeabi build attributes (.ARM.attributes) and no Go build info",
            layout.interpreter};
  if (!j.refusals.empty()) return {Status::refused, join(j.refusals), layout.interpreter, j.profile};
  return {Status::runs, j.profile, layout.interpreter, j.profile};
}

Verdict judge_host(const FileView& v, const Header& h) {
  constexpr HostMachine host = host_machine();
  if (host.machine == EM_NONE)
    return {Status::cannot_judge, "elfcheck does not know this host's architecture", {}};
  if (h.machine != host.machine)
    return {Status::refused,
            "built for " + machine_name(h.machine) + " (e_machine " + std::to_string(h.machine) +
                "), this host is " + machine_name(host.machine),
            {}};
  if (h.is64 != host.is64)
    return {Status::refused, std::string(h.is64 ? "64" : "32") + "-bit file on a " +
                                 (host.is64 ? "64" : "32") + "-bit host", {}};
  bool host_little = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
  if (h.little != host_little) return {Status::refused, "byte order differs from this host's", {}};
  Layout layout = read_layout(v, h);
  std::string profile = h.is64 ? "64-bit" : "32-bit";
  return {Status::runs, profile, layout.interpreter, profile};
}

}  // namespace

std::optional<Target> parse_target(std::string_view name) {
  if (name == "armv6") return Target::armv6;
  if (name == "host") return Target::host;
  return std::nullopt;
}

std::string target_name(Target target) {
  constexpr HostMachine host = host_machine();
  if (target == Target::armv6 || host.arm32) return "ARMv6";
  return "this host (" + machine_name(host.machine) + ")";
}

std::string describe(const Verdict& verdict, Target target) {
  switch (verdict.status) {
    case Status::runs:
      return "runs on " + target_name(target) + " (" + verdict.detail +
             (verdict.interpreter.empty() ? "" : ", dynamic: needs " + verdict.interpreter) + ")";
    case Status::refused: {
      // The file's own profile shows a float-ABI or userland mismatch at a glance.
      std::string built;
      if (!verdict.profile.empty()) built = verdict.profile;
      if (!verdict.interpreter.empty()) built += (built.empty() ? "" : ", ") + ("needs " + verdict.interpreter);
      return "does not run on " + target_name(target) + ": " + verdict.detail +
             (built.empty() ? "" : " (built for " + built + ")");
    }
    case Status::cannot_judge:
      return "cannot judge whether it runs on " + target_name(target) + ": " + verdict.detail;
    case Status::malformed: return "not a valid ELF file: " + verdict.detail;
    case Status::unreadable: return "cannot read: " + verdict.detail;
  }
  return verdict.detail;
}

ArmAttributes parse_arm_attributes(std::span<const std::uint8_t> section) {
  ArmAttributes out;
  if (section.empty()) throw FormatError(".ARM.attributes is empty");
  if (section[0] != 'A')
    throw FormatError(".ARM.attributes format version " + hex(section[0]) + " is not 'A'");
  ByteView v(section, true);
  std::uint64_t pos = 1;
  while (pos < section.size()) {
    std::uint32_t length = v.u32(pos, ".ARM.attributes subsection length");
    if (length < 4 || length > section.size() - pos)
      throw FormatError(".ARM.attributes subsection at offset " + hex(pos) + " claims " +
                        std::to_string(length) + " bytes, " + std::to_string(section.size() - pos) +
                        " remain");
    auto sub = section.subspan(static_cast<std::size_t>(pos), length);
    pos += length;
    std::size_t p = 4;
    std::string vendor = read_ntbs(sub, p, ".ARM.attributes vendor name");
    if (vendor != "aeabi") continue;  // toolchain-private attributes say nothing about the CPU
    out.has_aeabi = true;
    while (p < sub.size()) {
      std::size_t start = p;
      std::uint32_t tag = read_uleb32(sub, p, "aeabi sub-subsection tag");
      std::uint32_t size = ByteView(sub, true).u32(p, "aeabi sub-subsection size");
      p += 4;
      if (size < p - start || size > sub.size() - start)
        throw FormatError("aeabi sub-subsection (tag " + std::to_string(tag) + ") at offset " +
                          hex(start) + " claims " + std::to_string(size) + " bytes, " +
                          std::to_string(sub.size() - start) + " remain");
      auto body = sub.subspan(p, start + size - p);
      if (tag == Tag_File)
        parse_attribute_list(body, out);
      else if (tag != Tag_Section && tag != Tag_Symbol)
        throw FormatError("aeabi sub-subsection tag " + std::to_string(tag) + " is unknown");
      p = start + size;
    }
  }
  return out;
}

std::optional<GoBuildInfo> parse_go_buildinfo(std::span<const std::uint8_t> section) {
  static constexpr char magic[] = "\xff Go buildinf:";
  constexpr std::size_t magic_len = sizeof(magic) - 1, header_len = 32;
  if (section.size() < header_len || std::memcmp(section.data(), magic, magic_len) != 0)
    throw FormatError(".go.buildinfo does not start with the Go build info header");
  constexpr std::uint8_t flag_inline_strings = 2;  // Go 1.18+: strings follow the header
  if ((section[magic_len + 1] & flag_inline_strings) == 0) return std::nullopt;

  std::size_t pos = header_len;
  auto read_string = [&](const char* what) {
    std::uint64_t n = read_uleb128(section, pos, what);
    if (n > section.size() - pos)
      throw FormatError(std::string(what) + ": length " + std::to_string(n) + " runs past the section end");
    std::string s(reinterpret_cast<const char*>(section.data() + pos), static_cast<std::size_t>(n));
    pos += static_cast<std::size_t>(n);
    return s;
  };
  GoBuildInfo info;
  info.go_version = read_string("Go version");
  std::string modinfo = read_string("Go module info");
  // Lines such as "build\tGOARM=6"; the 16-byte sentinels around the text do
  // not contain these prefixes.
  std::size_t at = 0;
  while (at < modinfo.size()) {
    std::size_t end = modinfo.find('\n', at);
    if (end == std::string::npos) end = modinfo.size();
    std::string_view line(modinfo.data() + at, end - at);
    for (auto [prefix, field] : {std::pair{std::string_view("build\tGOARM="), &info.goarm},
                                 std::pair{std::string_view("build\tGOARCH="), &info.goarch}})
      if (line.substr(0, prefix.size()) == prefix) *field = std::string(line.substr(prefix.size()));
    at = end + 1;
  }
  return info;
}

void MemoryReader::read(std::uint64_t offset, std::span<std::uint8_t> out) const {
  if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
    throw ReadError("read of " + std::to_string(out.size()) + " bytes at offset " + hex(offset) +
                    " beyond the end of " + std::to_string(bytes_.size()) + " bytes");
  // An empty span may hold a null pointer, which memcpy must not get even
  // for no bytes (found by the host-asan unit run: an empty file).
  if (out.empty()) return;
  std::memcpy(out.data(), bytes_.data() + offset, out.size());
}

Verdict check_elf(const Reader& file, Target target) {
  try {
    std::array<std::uint8_t, EI_NIDENT> ident{};
    std::uint64_t size = file.size();
    file.read(0, std::span(ident.data(), static_cast<std::size_t>(std::min<std::uint64_t>(size, EI_NIDENT))));
    // Magic first: a short file of another kind (an empty ar archive) is "not ELF".
    if (size >= SELFMAG && std::memcmp(ident.data(), ELFMAG, SELFMAG) != 0)
      return {Status::malformed, "no ELF magic (\\x7fELF) at the start", {}};
    if (size < EI_NIDENT)
      return {Status::malformed, "file too short for an ELF header (" + std::to_string(size) + " bytes)", {}};
    std::uint8_t cls = ident[EI_CLASS], data = ident[EI_DATA];
    if (cls != ELFCLASS32 && cls != ELFCLASS64)
      return {Status::malformed, "EI_CLASS " + std::to_string(cls) + " is neither 32- nor 64-bit", {}};
    if (data != ELFDATA2LSB && data != ELFDATA2MSB)
      return {Status::malformed, "EI_DATA " + std::to_string(data) + " is no known byte order", {}};
    if (ident[EI_VERSION] != EV_CURRENT)
      return {Status::malformed, "EI_VERSION " + std::to_string(ident[EI_VERSION]) + " is not 1", {}};
    FileView v(file, data == ELFDATA2LSB);
    Header h = read_header(v, cls == ELFCLASS64);
    h.little = data == ELFDATA2LSB;
    if (target == Target::armv6 || host_machine().arm32) return judge_arm(v, h);
    return judge_host(v, h);
  } catch (const FormatError& e) {
    return {Status::malformed, e.what(), {}};
  } catch (const ReadError& e) {
    return {Status::unreadable, e.what(), {}};
  }
}

Verdict check_elf(std::span<const std::uint8_t> bytes, Target target) {
  return check_elf(MemoryReader(bytes), target);
}

}  // namespace pisec::elf
