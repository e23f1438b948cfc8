#include "privacy/ledger_digest.h"

#include <sodium.h>

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "nn/serialize.h"

namespace aegis::privacy {
namespace {

constexpr const char* kLedgerPrefix = "aegis.dp.";
// The stored form: algorithm, layout version, digest. A later layout gets "v2" and this one stays
// readable for the files that carry it.
constexpr const char* kDigestForm = "blake2b-256:v1:";
constexpr std::size_t kDigestBytes = 32;  // crypto_generichash_BYTES

bool is_ledger_key(const std::string& key) {
  return key.rfind(kLedgerPrefix, 0) == 0;
}

// The v1 layout. Integers are 8-byte little-endian; a string is its length then its bytes, so no
// two different sequences of fields serialize to the same bytes.
//   string "aegis ledger digest v1"
//   u64 n, then n × (string key, string value)         the "aegis.dp.*" entries, keys in byte order
//   u64 m, then m × (string name, string dtype, u64 rank, rank × i64 size, u64 nbytes, bytes)
//                                                       the tensors, names in byte order
class Hasher {
 public:
  Hasher() {
    if (sodium_init() < 0) AEGIS_THROW(Error, "ledger digest: libsodium could not be initialized");
    crypto_generichash_init(&m_state, nullptr, 0, kDigestBytes);
  }
  void bytes(const void* data, std::size_t n) {
    crypto_generichash_update(&m_state, static_cast<const unsigned char*>(data), n);
  }
  void u64(std::uint64_t v) {
    unsigned char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(v >> (8 * i));
    bytes(le, sizeof le);
  }
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  std::string hex() {
    unsigned char out[kDigestBytes];
    crypto_generichash_final(&m_state, out, kDigestBytes);
    char text[2 * kDigestBytes + 1];
    sodium_bin2hex(text, sizeof text, out, kDigestBytes);
    return text;
  }

 private:
  crypto_generichash_state m_state;
};


std::vector<std::pair<std::string, Tensor>> parameters_of(const nn::Module& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, var] : model.named_parameters()) out.emplace_back(name, var.value());
  return out;
}

}  // namespace

const char* ledger_status_name(LedgerStatus status) {
  switch (status) {
    case LedgerStatus::None:
      return "none";
    case LedgerStatus::Verified:
      return "verified";
    case LedgerStatus::NoDigest:
      return "no-digest";
    case LedgerStatus::UnknownForm:
      return "unknown-digest";
    case LedgerStatus::Mismatch:
      return "mismatch";
  }
  return "?";
}

std::string ledger_digest(const std::map<std::string, std::string>& metadata,
                          const std::vector<std::pair<std::string, Tensor>>& tensors) {
  Hasher h;
  h.str("aegis ledger digest v1");
  std::uint64_t entries = 0;
  for (const auto& [key, value] : metadata) entries += is_ledger_key(key);
  h.u64(entries);
  for (const auto& [key, value] : metadata)  // std::map: keys already in byte order
    if (is_ledger_key(key)) {
      h.str(key);
      h.str(value);
    }
  std::vector<const std::pair<std::string, Tensor>*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    AEGIS_CHECK(sorted[i - 1]->first != sorted[i]->first,
                "ledger digest: tensor name '" << sorted[i]->first << "' appears twice");
  h.u64(sorted.size());
  for (const auto* entry : sorted) {
    const Tensor host = entry->second.to(Device::cpu());
    h.str(entry->first);
    h.str(nn::safetensors_dtype_name(host.dtype()));  // fixed spellings, not dtype_name()
    h.u64(host.shape().size());
    for (std::int64_t d : host.shape()) h.u64(static_cast<std::uint64_t>(d));
    h.u64(host.nbytes());
    // Tensor storage is little-endian on every host aegis builds for (nn/serialize.cpp asserts it),
    // so these are the bytes the safetensors file holds.
    if (host.nbytes() > 0) h.bytes(host.raw_data(), host.nbytes());
  }
  return kDigestForm + h.hex();
}

std::map<std::string, std::string> sealed_ledger_metadata(const PrivacyLedger& ledger, const nn::Module& model) {
  std::map<std::string, std::string> metadata = ledger.to_metadata();
  metadata[kLedgerDigestKey] = ledger_digest(metadata, parameters_of(model));
  return metadata;
}

LedgerCheck verify_ledger(const std::map<std::string, std::string>& metadata,
                          const std::vector<std::pair<std::string, Tensor>>& tensors) {
  const bool has_ledger =
      std::any_of(metadata.begin(), metadata.end(), [](const auto& kv) { return is_ledger_key(kv.first); });
  const auto found = metadata.find(kLedgerDigestKey);
  if (found == metadata.end()) {
    if (!has_ledger) return {LedgerStatus::None, "no privacy ledger (not trained with DP)"};
    return {LedgerStatus::NoDigest,
            "ledger not verifiable (no digest): the file was written before aegis stored ledger digests, "
            "or the digest was removed"};
  }
  const std::string& stored = found->second;
  if (stored.rfind(kDigestForm, 0) != 0) {
    const std::string shown = stored.size() > 24 ? stored.substr(0, 24) + "..." : stored;
    return {LedgerStatus::UnknownForm, "ledger not verifiable: digest '" + shown + "' is not of the form " +
                                           kDigestForm + "<hex> that this aegis reads"};
  }
  if (!has_ledger)
    return {LedgerStatus::Mismatch, "ledger does not match this model: the file has a ledger digest but no ledger"};
  if (ledger_digest(metadata, tensors) != stored)
    return {LedgerStatus::Mismatch,
            "ledger does not match this model: the ledger or the weights changed after the DP run wrote them"};
  return {LedgerStatus::Verified, "ledger verified: the digest matches the ledger and the weights"};
}

LedgerCheck verify_ledger(const std::map<std::string, std::string>& metadata, const nn::Module& model) {
  return verify_ledger(metadata, parameters_of(model));
}

}  // namespace aegis::privacy
