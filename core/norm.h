// The norm of a perturbation ball ‖δ‖ ≤ ε that attacks search and bounds certify over: L∞ (the
// largest change of any input element) or L2 (Euclidean). Parsed from text once, at the edge
// (command-line options, metadata); library code compares the enum.
#pragma once

#include <string>

namespace aegis {

enum class Norm { Linf, L2 };

// "linf", "l2".
const char* norm_name(Norm norm) noexcept;
// The inverse of norm_name (exact, lower case); InvalidArgument naming the text otherwise.
Norm parse_norm(const std::string& name);

}  // namespace aegis
