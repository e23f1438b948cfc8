// The VNN-LIB reader (certify/vnnlib.h): text → S-expressions (with line and column) → commands
// → formulas in disjunctive normal form over linear atoms.
#include "certify/vnnlib.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>

#include "core/error.h"
#include "nn/data/dataset.h"

namespace aegis::certify {

namespace {

constexpr int kMaxDepth = 256;  // nesting of parentheses (the parser recurses)

struct Sexp {
  bool list = false;
  std::string atom;
  std::vector<Sexp> items;
  int line = 1, col = 1;
};

class Reader {
 public:
  Reader(const std::string& text, const std::string& source) : m_text(text), m_source(source) {}

  [[noreturn]] void fail(int line, int col, const std::string& what) const {
    AEGIS_THROW(IoError, m_source << ":" << line << ":" << col << ": " << what);
  }

  // The top-level expressions of the text.
  std::vector<Sexp> all() {
    std::vector<Sexp> out;
    for (skip(); m_at < m_text.size(); skip()) out.push_back(next(0));
    return out;
  }

 private:
  void advance() {
    if (m_text[m_at] == '\n') {
      ++m_line;
      m_col = 1;
    } else {
      ++m_col;
    }
    ++m_at;
  }

  void skip() {
    while (m_at < m_text.size()) {
      const char c = m_text[m_at];
      if (c == ';') {
        while (m_at < m_text.size() && m_text[m_at] != '\n') advance();
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance();
      } else {
        return;
      }
    }
  }

  Sexp next(int depth) {
    Sexp s;
    s.line = m_line;
    s.col = m_col;
    const char c = m_text[m_at];
    if (c == ')') fail(m_line, m_col, "unexpected ')'");
    if (c != '(') {
      while (m_at < m_text.size()) {
        const char d = m_text[m_at];
        if (d == '(' || d == ')' || d == ';' || d == ' ' || d == '\t' || d == '\n' || d == '\r') break;
        if (static_cast<unsigned char>(d) < 0x20 || static_cast<unsigned char>(d) >= 0x7f)
          fail(m_line, m_col, "unexpected byte " + std::to_string(static_cast<unsigned char>(d)));
        s.atom += d;
        advance();
      }
      return s;
    }
    if (depth >= kMaxDepth) fail(m_line, m_col, "expressions nested more than " + std::to_string(kMaxDepth) + " deep");
    s.list = true;
    advance();
    for (skip(); m_at < m_text.size() && m_text[m_at] != ')'; skip()) s.items.push_back(next(depth + 1));
    if (m_at >= m_text.size()) fail(s.line, s.col, "'(' is never closed (expected ')' before the end of the file)");
    advance();
    return s;
  }

  const std::string& m_text;
  const std::string& m_source;
  std::size_t m_at = 0;
  int m_line = 1, m_col = 1;
};

// A linear expression over the variables: inputs 0..n−1 as index i, outputs as n + j.
struct Linear {
  std::map<std::int64_t, double> coef;
  double constant = 0.0;
};

struct Atom {
  Linear expr;  // expr ≤ 0 (< 0 when strict)
  bool strict = false;
  int line = 1, col = 1;
};
using Conjunction = std::vector<Atom>;
using Dnf = std::vector<Conjunction>;

class Parser {
 public:
  Parser(Reader& reader, VnnProperty& p) : m_reader(reader), m_p(p) {}

  void command(const Sexp& s) {
    if (!s.list || s.items.empty() || s.items[0].list)
      fail(s, "expected a command such as (declare-const X_0 Real) or (assert …)");
    const std::string& head = s.items[0].atom;
    if (head == "declare-const") return declare(s);
    if (head == "assert") {
      if (s.items.size() != 2) fail(s, "(assert …) takes one formula, got " + std::to_string(s.items.size() - 1));
      m_asserts.push_back(&s.items[1]);
      return;
    }
    fail(s.items[0], "unknown command '" + head + "' (expected declare-const or assert)");
  }

  void finish() {
    for (int kind = 0; kind < 2; ++kind) {
      const std::vector<int>& seen = kind == 0 ? m_x : m_y;
      for (std::size_t i = 0; i < seen.size(); ++i)
        if (!seen[i])
          AEGIS_THROW(IoError, m_p.source << ": " << (kind == 0 ? "X_" : "Y_") << i << " is not declared, but "
                                          << (kind == 0 ? "X_" : "Y_") << seen.size() - 1
                                          << " is: variables must be numbered from 0 without gaps");
    }
    m_p.num_inputs = static_cast<std::int64_t>(m_x.size());
    m_p.num_outputs = static_cast<std::int64_t>(m_y.size());
    if (m_p.num_inputs == 0) AEGIS_THROW(IoError, m_p.source << ": declares no input variable X_0 …");
    if (m_p.num_outputs == 0) AEGIS_THROW(IoError, m_p.source << ": declares no output variable Y_0 …");
    Dnf all{Conjunction{}};
    for (const Sexp* a : m_asserts) all = conjoin(all, formula(*a));
    for (const Conjunction& c : all) disjunct(c);
  }

 private:
  [[noreturn]] void fail(const Sexp& s, const std::string& what) const { m_reader.fail(s.line, s.col, what); }

  void declare(const Sexp& s) {
    if (s.items.size() != 3 || s.items[1].list || s.items[2].list) fail(s, "expected (declare-const NAME Real)");
    if (s.items[2].atom != "Real") fail(s.items[2], "variables must be of sort Real, not '" + s.items[2].atom + "'");
    const auto [is_input, index] = variable(s.items[1], false);
    std::vector<int>& seen = is_input ? m_x : m_y;
    if (static_cast<std::size_t>(index) >= seen.size()) seen.resize(static_cast<std::size_t>(index) + 1, 0);
    if (seen[static_cast<std::size_t>(index)]) fail(s.items[1], "'" + s.items[1].atom + "' is declared twice");
    seen[static_cast<std::size_t>(index)] = 1;
  }

  // X_i → (true, i), Y_j → (false, j); with `declared`, the variable must have been declared.
  std::pair<bool, std::int64_t> variable(const Sexp& s, bool declared) const {
    const std::string& a = s.atom;
    const bool is_input = a.rfind("X_", 0) == 0, is_output = a.rfind("Y_", 0) == 0;
    if (!is_input && !is_output) fail(s, "unknown variable '" + a + "' (expected X_<i> or Y_<j>)");
    const std::string digits = a.substr(2);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
      fail(s, "unknown variable '" + a + "' (expected X_<i> or Y_<j>, i and j decimal numbers below 10^9)");
    const std::int64_t index = std::stoll(digits);
    if (declared) {
      const std::vector<int>& seen = is_input ? m_x : m_y;
      if (static_cast<std::size_t>(index) >= seen.size() || !seen[static_cast<std::size_t>(index)])
        fail(s, "variable '" + a + "' is not declared");
    }
    if (index >= 10000000) fail(s, "variable '" + a + "': index too large");
    return {is_input, index};
  }

  static bool is_number(const std::string& a) {
    if (a.empty()) return false;
    const char c = a[0];
    return (c >= '0' && c <= '9') || c == '.' || ((c == '-' || c == '+') && a.size() > 1);
  }

  double number(const Sexp& s) const {
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(s.atom.c_str(), &end);
    if (end != s.atom.c_str() + s.atom.size() || s.atom.find_first_of("xXnN") != std::string::npos)
      fail(s, "expected a number, got '" + s.atom + "'");
    if (!std::isfinite(v) || errno == ERANGE) fail(s, "number '" + s.atom + "' is out of range");
    return v;
  }

  static Linear scaled(Linear e, double k) {
    for (auto& [v, c] : e.coef) c *= k;
    e.constant *= k;
    return e;
  }

  static void add_to(Linear& a, const Linear& b, double k) {
    for (const auto& [v, c] : b.coef) a.coef[v] += k * c;
    a.constant += k * b.constant;
  }

  Linear term(const Sexp& s) const {
    Linear e;
    if (!s.list) {
      if (is_number(s.atom)) {
        e.constant = number(s);
      } else {
        const auto [is_input, index] = variable(s, true);
        e.coef[is_input ? index : kOutputBase + index] = 1.0;
      }
      return e;
    }
    if (s.items.empty() || s.items[0].list) fail(s, "expected a term: a number, a variable or (+|-|* …)");
    const std::string& op = s.items[0].atom;
    const std::size_t n = s.items.size() - 1;
    if (n == 0) fail(s, "(" + op + ") needs operands");
    if (op == "+") {
      for (std::size_t i = 1; i <= n; ++i) add_to(e, term(s.items[i]), 1.0);
    } else if (op == "-") {
      e = term(s.items[1]);
      if (n == 1) return scaled(e, -1.0);
      for (std::size_t i = 2; i <= n; ++i) add_to(e, term(s.items[i]), -1.0);
    } else if (op == "*") {
      e.constant = 1.0;
      for (std::size_t i = 1; i <= n; ++i) {
        const Linear f = term(s.items[i]);
        if (!f.coef.empty() && !e.coef.empty())
          fail(s.items[i], "non-linear term: a product of two variables (only constant multiples are supported)");
        if (f.coef.empty()) {
          e = scaled(e, f.constant);
        } else {
          e = scaled(f, e.constant);
        }
      }
    } else {
      fail(s.items[0], "unknown operator '" + op + "' in a term (expected +, - or *)");
    }
    return e;
  }

  Dnf formula(const Sexp& s) const {
    if (!s.list || s.items.empty() || s.items[0].list)
      fail(s, "expected a formula: (and …), (or …) or a comparison (<=, >=, <, >)");
    const std::string& op = s.items[0].atom;
    if (op == "and" || op == "or") {
      Dnf out = op == "and" ? Dnf{Conjunction{}} : Dnf{};
      for (std::size_t i = 1; i < s.items.size(); ++i) {
        Dnf part = formula(s.items[i]);
        if (op == "and") {
          out = conjoin(out, part);
        } else {
          out.insert(out.end(), part.begin(), part.end());
          if (out.size() > kMaxVnnDisjuncts) too_many(s);
        }
      }
      return out;
    }
    if (op != "<=" && op != ">=" && op != "<" && op != ">")
      fail(s.items[0], "unknown operator '" + op + "' in a formula (expected and, or, <=, >=, <, >)");
    if (s.items.size() != 3) fail(s, "(" + op + " a b) compares two terms, got " + std::to_string(s.items.size() - 1));
    const bool less = op[0] == '<';
    Atom a;
    a.expr = term(s.items[less ? 1 : 2]);
    add_to(a.expr, term(s.items[less ? 2 : 1]), -1.0);
    a.strict = op.size() == 1;
    a.line = s.line;
    a.col = s.col;
    bool inputs = false, outputs = false;
    for (auto it = a.expr.coef.begin(); it != a.expr.coef.end();) {
      if (it->second == 0.0) {
        it = a.expr.coef.erase(it);
        continue;
      }
      (it->first >= kOutputBase ? outputs : inputs) = true;
      ++it;
    }
    bool finite = std::isfinite(a.expr.constant);
    for (const auto& [v, c] : a.expr.coef) finite = finite && std::isfinite(c);
    if (!finite) fail(s, "a coefficient or constant of this constraint is out of the range of doubles");
    if (inputs && outputs) fail(s, "a constraint mixes inputs and outputs, which is not supported");
    if (inputs && a.expr.coef.size() > 1)
      fail(s, "a constraint on inputs must bound one input, (<= X_i c) or (>= X_i c); this one combines " +
                  std::to_string(a.expr.coef.size()));
    return Dnf{Conjunction{a}};
  }

  [[noreturn]] void too_many(const Sexp& s) const {
    fail(s, "the property expands to more than " + std::to_string(kMaxVnnDisjuncts) + " disjuncts");
  }

  Dnf conjoin(const Dnf& a, const Dnf& b) const {
    if (a.size() * b.size() > kMaxVnnDisjuncts)
      AEGIS_THROW(IoError, m_p.source << ": the property expands to more than " << kMaxVnnDisjuncts << " disjuncts");
    Dnf out;
    for (const Conjunction& x : a)
      for (const Conjunction& y : b) {
        Conjunction c = x;
        c.insert(c.end(), y.begin(), y.end());
        out.push_back(std::move(c));
      }
    return out;
  }

  // One conjunction → a disjunct (dropped when infeasible on its own: an empty box or a false
  // constant comparison).
  void disjunct(const Conjunction& c) {
    const std::size_t n = static_cast<std::size_t>(m_p.num_inputs);
    const double inf = std::numeric_limits<double>::infinity();
    VnnDisjunct d;
    d.lower.assign(n, -inf);
    d.upper.assign(n, inf);
    for (const Atom& a : c) {
      if (a.expr.coef.empty()) {
        if (a.strict ? !(a.expr.constant < 0.0) : !(a.expr.constant <= 0.0)) return;
        continue;
      }
      const auto [var, k] = *a.expr.coef.begin();
      if (var < kOutputBase) {
        // k·x + c ≤ 0 (strictness dropped: a closed box is searched and bounded, and it contains
        // the open one).
        const double bound = -a.expr.constant / k;
        if (k > 0.0)
          d.upper[static_cast<std::size_t>(var)] = std::min(d.upper[static_cast<std::size_t>(var)], bound);
        else
          d.lower[static_cast<std::size_t>(var)] = std::max(d.lower[static_cast<std::size_t>(var)], bound);
        continue;
      }
      OutputConstraint oc;
      oc.coef.assign(static_cast<std::size_t>(m_p.num_outputs), 0.0);
      for (const auto& [v, coef] : a.expr.coef) oc.coef[static_cast<std::size_t>(v - kOutputBase)] = coef;
      oc.constant = a.expr.constant;
      oc.strict = a.strict;
      d.constraints.push_back(std::move(oc));
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(d.lower[i]) || !std::isfinite(d.upper[i]))
        AEGIS_THROW(IoError, m_p.source << ": X_" << i << " has no " << (std::isfinite(d.lower[i]) ? "upper" : "lower")
                                        << " bound" << (m_p.disjuncts.empty() ? "" : " in one of the disjuncts")
                                        << "; every input needs a box (<= X_i c) and (>= X_i c)");
      if (d.lower[i] > d.upper[i]) return;
    }
    m_p.disjuncts.push_back(std::move(d));
  }

  static constexpr std::int64_t kOutputBase = std::int64_t{1} << 40;

  Reader& m_reader;
  VnnProperty& m_p;
  std::vector<int> m_x, m_y;  // declared indices
  std::vector<const Sexp*> m_asserts;
};

}  // namespace

VnnProperty parse_vnnlib(const std::string& text, const std::string& source) {
  VnnProperty p;
  p.source = source;
  Reader reader(text, source);
  const std::vector<Sexp> top = reader.all();
  Parser parser(reader, p);
  for (const Sexp& s : top) parser.command(s);
  parser.finish();
  return p;
}

VnnProperty load_vnnlib(const std::string& path) {
  // Gunzipped when compressed (the VNN-COMP benchmarks ship .vnnlib.gz); at most 1 GiB of text.
  const std::vector<unsigned char> bytes = nn::detail::read_file_bytes(path, std::uint64_t{1} << 30);
  return parse_vnnlib(std::string(bytes.begin(), bytes.end()), path);
}

}  // namespace aegis::certify
