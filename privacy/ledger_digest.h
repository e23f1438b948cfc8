// Tamper evidence for the privacy ledger in a model file. A DP model's metadata carries
// "aegis.ledger_digest" = "blake2b-256:v1:<64 hex digits>": BLAKE2b with a 32-byte output
// (RFC 7693; libsodium's crypto_generichash) over a canonical serialization of
//   - every metadata entry whose key starts with "aegis.dp." (the ledger, see PrivacyLedger), and
//   - every weight tensor of the file: its name, dtype, shape and exact bytes,
// both in byte order of their names, each field length-prefixed (the layout is in
// ledger_digest.cpp; "v1" names it, so a later layout can be told apart). A ledger edited
// without the weights (ε lowered, a phase removed, a key dropped or added) or weights changed
// after the DP run (fine-tuned or edited outside aegis) no longer match the digest.
//
// This guards against accidents and careless edits, NOT against a forger: the digest has no key,
// so anyone who edits the ledger can recompute it. A model's privacy claim is only as
// trustworthy as the hands the file passed through.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "privacy/dp_train.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

inline constexpr const char* kLedgerDigestKey = "aegis.ledger_digest";

enum class LedgerStatus {
  None,         // no "aegis.dp.*" entries and no digest: the model was not trained with DP
  Verified,     // the digest matches the ledger and the weights
  NoDigest,     // a ledger without a digest (written before aegis stored digests): unverifiable
  UnknownForm,  // a digest in a form this build does not know (another algorithm or layout)
  Mismatch,     // the digest does not match: "ledger does not match this model"
};

struct LedgerCheck {
  LedgerStatus status = LedgerStatus::None;
  std::string detail;  // one sentence for people: what was found
};

// "none", "verified", "no-digest", "unknown-digest", "mismatch" (the JSON spelling).
const char* ledger_status_name(LedgerStatus status);

// The digest, in its stored form, of the "aegis.dp.*" entries of `metadata` and of `tensors`
// (host or device; their order does not matter). Throws InvalidArgument for a duplicated name.
std::string ledger_digest(const std::map<std::string, std::string>& metadata,
                          const std::vector<std::pair<std::string, Tensor>>& tensors);

// `ledger.to_metadata()` plus its digest over `model`'s parameters as they are now: what a DP
// model file's metadata holds (pass it to nn::save_classifier, with any other entries added).
std::map<std::string, std::string> sealed_ledger_metadata(const PrivacyLedger& ledger, const nn::Module& model);

// Checks a file's metadata against its tensors (or against the module its tensors were loaded
// into: nn::load_model copies them exactly).
LedgerCheck verify_ledger(const std::map<std::string, std::string>& metadata,
                          const std::vector<std::pair<std::string, Tensor>>& tensors);
LedgerCheck verify_ledger(const std::map<std::string, std::string>& metadata, const nn::Module& model);

}  // namespace aegis::privacy
