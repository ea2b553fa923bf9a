// signify-compatible Ed25519 keys and signatures (OpenBSD signify(1) formats),
// with OpenSSL doing base64, Ed25519 and SHA-512.
#include <algorithm>
#include <cstring>
#include <memory>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "pisec/formats.hpp"

namespace pisec::crypto {
namespace {

constexpr std::string_view comment_prefix = "untrusted comment: ";
constexpr std::size_t max_comment = 1024;  // signify's COMMENTMAXLEN
constexpr std::uint8_t alg_ed[2] = {'E', 'd'};
constexpr std::uint8_t kdf_bk[2] = {'B', 'K'};

// Encoded sizes: pkalg(2) keynum(8) key(32)
constexpr std::size_t pubkey_size = 2 + 8 + 32;
// pkalg(2) kdfalg(2) kdfrounds(4) salt(16) checksum(8) keynum(8) seckey(64)
constexpr std::size_t seckey_size = 2 + 2 + 4 + 16 + 8 + 8 + 64;
// pkalg(2) keynum(8) sig(64)
constexpr std::size_t sig_size = 2 + 8 + 64;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

bool is_b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Splits "untrusted comment: ...\n<base64>\n" and decodes the payload, which
// must be exactly `size` bytes long.
std::vector<std::uint8_t> read_b64_file(std::string_view text, const std::string& where, const char* kind,
                                        std::size_t size) {
  const std::string what = where + ": not a signify " + kind + ": ";
  if (text.substr(0, comment_prefix.size()) != comment_prefix)
    throw Error(what + "first line must start with \"untrusted comment: \"");
  auto nl = text.find('\n');
  if (nl == std::string_view::npos) throw Error(what + "no line after the comment line");
  if (nl - comment_prefix.size() > max_comment) throw Error(what + "comment line longer than 1024 bytes");
  std::string_view rest = text.substr(nl + 1);
  auto nl2 = rest.find('\n');
  if (nl2 == std::string_view::npos) throw Error(what + "second line (base64) is not terminated by a newline");
  if (nl2 + 1 != rest.size()) throw Error(what + "unexpected data after the base64 line");
  auto bytes = base64_decode(rest.substr(0, nl2));
  if (!bytes) throw Error(what + "second line is not valid base64");
  if (bytes->size() != size)
    throw Error(what + "decodes to " + std::to_string(bytes->size()) + " bytes, expected " + std::to_string(size));
  if (std::memcmp(bytes->data(), alg_ed, 2) != 0)
    throw Error(what + "algorithm \"" + std::string(bytes->begin(), bytes->begin() + 2) +
                "\" is not supported (only Ed25519, \"Ed\")");
  return *bytes;
}

std::string b64_file(std::string_view comment, const std::vector<std::uint8_t>& bytes) {
  if (comment.find('\n') != std::string_view::npos || comment.size() > max_comment)
    throw Error("signify comment must be one line of at most 1024 bytes");
  std::string out(comment_prefix);
  out += comment;
  out += '\n';
  out += base64_encode(bytes.data(), bytes.size());
  out += '\n';
  return out;
}

template <std::size_t N>
void put(std::vector<std::uint8_t>& out, const std::array<std::uint8_t, N>& a) {
  out.insert(out.end(), a.begin(), a.end());
}

template <std::size_t N>
std::array<std::uint8_t, N> take(const std::vector<std::uint8_t>& in, std::size_t offset) {
  std::array<std::uint8_t, N> a{};
  std::memcpy(a.data(), in.data() + offset, N);
  return a;
}

std::array<std::uint8_t, 8> seckey_checksum(const std::array<std::uint8_t, 64>& key) {
  std::array<std::uint8_t, SHA512_DIGEST_LENGTH> digest{};
  unsigned int len = 0;
  if (EVP_Digest(key.data(), key.size(), digest.data(), &len, EVP_sha512(), nullptr) != 1)
    throw Error("SHA-512 failed in OpenSSL");
  std::array<std::uint8_t, 8> sum{};
  std::memcpy(sum.data(), digest.data(), sum.size());
  return sum;
}

// Ed25519 points of small order (the 8 torsion points) and their non-canonical
// spellings, compared with the x sign bit (top bit of byte 31) cleared, as
// libsodium's verifier does. A public key or R among them lets one fixed
// signature "verify" any message (A = R = identity, S = 0), since OpenSSL checks
// neither. Encoded y, little-endian: 0 (order 4), 1 (identity), the two order-8
// y values, and p-1 (order 2), p (= 0) and p+1 (= 1) with p = 2^255 - 19.
bool is_small_order_point(const std::uint8_t* enc) {
  static constexpr std::uint8_t order8_a[32] = {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
                                                0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
                                                0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05};
  static constexpr std::uint8_t order8_b[32] = {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
                                                0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
                                                0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a};
  std::array<std::uint8_t, 32> y{};
  std::memcpy(y.data(), enc, y.size());
  y[31] &= 0x7f;
  auto small_int = [&](std::uint8_t v) {  // y == v for v < 256
    return y[0] == v && std::all_of(y.begin() + 1, y.end(), [](std::uint8_t b) { return b == 0; });
  };
  auto p_plus = [&](int delta) {  // y == p + delta for delta in -1..1
    return y[0] == 0xed + delta && y[31] == 0x7f &&
           std::all_of(y.begin() + 1, y.end() - 1, [](std::uint8_t b) { return b == 0xff; });
  };
  return small_int(0) || small_int(1) || std::memcmp(y.data(), order8_a, 32) == 0 ||
         std::memcmp(y.data(), order8_b, 32) == 0 || p_plus(-1) || p_plus(0) || p_plus(1);
}

// S must be below the group order L = 2^252 + 27742317777372353535851937790883648493
// (little-endian), or (R, S + L) would be a second valid signature.
bool scalar_below_group_order(const std::uint8_t* s) {
  static constexpr std::uint8_t order[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                             0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                             0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
  for (int i = 31; i >= 0; --i) {
    if (s[i] != order[i]) return s[i] < order[i];
  }
  return false;  // equal to L
}

PkeyPtr private_pkey(const SecretKey& k) {
  PkeyPtr p(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, k.key.data(), 32));
  if (!p) throw Error("OpenSSL refused the Ed25519 secret key");
  return p;
}

}  // namespace

std::string base64_encode(const std::uint8_t* data, std::size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > 1024 * 1024) return std::nullopt;
  std::size_t pad = 0;
  if (text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  for (std::size_t i = 0; i < text.size() - pad; ++i)
    if (!is_b64_char(text[i])) return std::nullopt;
  std::vector<std::uint8_t> out(text.size() / 4 * 3);
  // EVP_DecodeBlock skips surrounding whitespace (excluded above) and counts
  // padding as output bytes, so the padding is subtracted here.
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  // Canonical form only: unused low bits must be zero, so re-encoding gives the same text.
  if (base64_encode(out.data(), out.size()) != text) return std::nullopt;
  return out;
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 0xf];
  }
  return out;
}

std::string keynum_hex(const KeyNum& k) { return to_hex(k.data(), k.size()); }

PublicKey parse_public_key(std::string_view text, const std::string& where) {
  auto b = read_b64_file(text, where, "public key", pubkey_size);
  PublicKey k;
  k.keynum = take<8>(b, 2);
  k.key = take<32>(b, 10);
  if (is_small_order_point(k.key.data()))
    throw Error(where + ": public key is a small-order point (it would accept forged signatures)");
  return k;
}

SecretKey parse_secret_key(std::string_view text, const std::string& where) {
  auto b = read_b64_file(text, where, "secret key", seckey_size);
  const std::string what = where + ": ";
  if (std::memcmp(b.data() + 2, kdf_bk, 2) != 0)
    throw Error(what + "unknown key derivation \"" + std::string(b.begin() + 2, b.begin() + 4) +
                "\" (signify uses \"BK\")");
  std::uint32_t rounds = (std::uint32_t{b[4]} << 24) | (std::uint32_t{b[5]} << 16) |
                         (std::uint32_t{b[6]} << 8) | std::uint32_t{b[7]};
  if (rounds != 0)
    throw Error(what + "secret key is protected by a passphrase (bcrypt_pbkdf, " + std::to_string(rounds) +
                " rounds), which pisecd does not support; create keys with `signify-openbsd -G -n` or "
                "`pisecd keygen`");
  auto checksum = take<8>(b, 24);
  SecretKey k;
  k.keynum = take<8>(b, 32);
  k.key = take<64>(b, 40);
  if (seckey_checksum(k.key) != checksum) throw Error(what + "secret key checksum mismatch (corrupt key file)");
  if (!std::equal(k.key.begin() + 32, k.key.end(), public_half(k).key.begin()))
    throw Error(what + "secret key is corrupt: its public half does not belong to its seed");
  return k;
}

Signature parse_signature(std::string_view text, const std::string& where) {
  auto b = read_b64_file(text, where, "signature", sig_size);
  Signature s;
  s.keynum = take<8>(b, 2);
  s.sig = take<64>(b, 10);
  return s;
}

std::string format_public_key(const PublicKey& k, std::string_view comment) {
  std::vector<std::uint8_t> b(alg_ed, alg_ed + 2);
  put(b, k.keynum);
  put(b, k.key);
  return b64_file(comment, b);
}

std::string format_secret_key(const SecretKey& k, std::string_view comment) {
  std::vector<std::uint8_t> b(alg_ed, alg_ed + 2);
  b.insert(b.end(), kdf_bk, kdf_bk + 2);
  b.insert(b.end(), 4, 0);  // kdfrounds 0: unencrypted, like `signify -G -n`
  std::array<std::uint8_t, 16> salt{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) throw Error("RAND_bytes failed");
  put(b, salt);
  put(b, seckey_checksum(k.key));
  put(b, k.keynum);
  put(b, k.key);
  return b64_file(comment, b);
}

std::string format_signature(const Signature& s, std::string_view comment) {
  std::vector<std::uint8_t> b(alg_ed, alg_ed + 2);
  put(b, s.keynum);
  put(b, s.sig);
  return b64_file(comment, b);
}

PublicKey public_half(const SecretKey& k) {
  auto p = private_pkey(k);
  PublicKey pub;
  pub.keynum = k.keynum;
  std::size_t len = pub.key.size();
  if (EVP_PKEY_get_raw_public_key(p.get(), pub.key.data(), &len) != 1 || len != pub.key.size())
    throw Error("OpenSSL could not derive the Ed25519 public key");
  return pub;
}

KeyPair generate_keypair() {
  SecretKey sec;
  if (RAND_bytes(sec.keynum.data(), static_cast<int>(sec.keynum.size())) != 1 ||
      RAND_bytes(sec.key.data(), 32) != 1)
    throw Error("RAND_bytes failed: no randomness for a key");
  PublicKey pub = public_half(sec);
  std::copy(pub.key.begin(), pub.key.end(), sec.key.begin() + 32);
  return {pub, sec};
}

Signature sign(const SecretKey& k, std::string_view message) {
  auto p = private_pkey(k);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  Signature s;
  s.keynum = k.keynum;
  std::size_t len = s.sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, p.get()) != 1 ||
      EVP_DigestSign(ctx.get(), s.sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      len != s.sig.size())
    throw Error("Ed25519 signing failed in OpenSSL");
  return s;
}

bool verify(const PublicKey& k, const Signature& s, std::string_view message) {
  if (k.keynum != s.keynum)
    throw Error("signature made with key " + keynum_hex(s.keynum) + ", this is key " + keynum_hex(k.keynum));
  // Checked here too: a PublicKey need not come from parse_public_key.
  if (is_small_order_point(k.key.data())) throw Error("public key is a small-order point");
  if (is_small_order_point(s.sig.data())) throw Error("signature R is a small-order point");
  if (!scalar_below_group_order(s.sig.data() + 32)) throw Error("signature S is not below the group order L");
  PkeyPtr p(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, k.key.data(), k.key.size()));
  if (!p) throw Error("OpenSSL refused the Ed25519 public key");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, p.get()) != 1)
    throw Error("Ed25519 verification could not start in OpenSSL");
  return EVP_DigestVerify(ctx.get(), s.sig.data(), s.sig.size(),
                          reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

}  // namespace pisec::crypto
