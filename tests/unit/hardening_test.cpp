// The release hardening of build/ember and build/ember-jailer (top-level CMakeLists.txt, README
// "Guarantees"), read from their ELF headers with <elf.h> alone: position-independent (ET_DYN),
// static (no PT_INTERP), full RELRO (PT_GNU_RELRO and BIND_NOW), a non-executable stack, and
// their own code compiled with the stack protector and (ember's) FORTIFY. EMBER_BIN overrides
// the ember binary.
#include <elf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

// A whole ELF64 file in memory; every table is bounds-checked before it is viewed.
class ElfFile {
 public:
  explicit ElfFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    std::streamoff size = in ? static_cast<std::streamoff>(in.tellg()) : 0;
    bytes_.resize(size > 0 ? static_cast<size_t>(size) : 0);
    if (!in.seekg(0).read(bytes_.data(), static_cast<std::streamsize>(bytes_.size()))) bytes_.clear();
    if (bytes_.size() < sizeof(Elf64_Ehdr)) return;
    std::memcpy(&header_, bytes_.data(), sizeof(header_));
    valid_ = std::memcmp(header_.e_ident, ELFMAG, SELFMAG) == 0 && header_.e_ident[EI_CLASS] == ELFCLASS64 &&
             header_.e_phentsize == sizeof(Elf64_Phdr) && header_.e_shentsize == sizeof(Elf64_Shdr) &&
             table<Elf64_Phdr>(header_.e_phoff, header_.e_phnum).size() == header_.e_phnum &&
             table<Elf64_Shdr>(header_.e_shoff, header_.e_shnum).size() == header_.e_shnum;
  }

  bool valid() const { return valid_; }
  const Elf64_Ehdr& header() const { return header_; }
  std::vector<Elf64_Phdr> segments() const { return table<Elf64_Phdr>(header_.e_phoff, header_.e_phnum); }
  std::vector<Elf64_Shdr> sections() const { return table<Elf64_Shdr>(header_.e_shoff, header_.e_shnum); }

  std::optional<Elf64_Phdr> segment(uint32_t type) const {
    for (const auto& p : segments()) {
      if (p.p_type == type) return p;
    }
    return std::nullopt;
  }

  std::optional<Elf64_Shdr> section(std::string_view name) const {
    auto all = sections();
    if (header_.e_shstrndx >= all.size()) return std::nullopt;
    for (const auto& s : all) {
      if (string_at(all[header_.e_shstrndx], s.sh_name) == name) return s;
    }
    return std::nullopt;
  }

  // The value of a dynamic-section tag, if the file has the tag.
  std::optional<uint64_t> dynamic(int64_t tag) const {
    auto dyn = segment(PT_DYNAMIC);
    if (!dyn) return std::nullopt;
    for (const auto& d : table<Elf64_Dyn>(dyn->p_offset, dyn->p_filesz / sizeof(Elf64_Dyn))) {
      if (d.d_tag == DT_NULL) break;
      if (d.d_tag == tag) return d.d_un.d_val;
    }
    return std::nullopt;
  }

  // Names in a symbol table (".symtab" or ".dynsym"), without a "@VERSION" suffix.
  std::vector<std::string> symbol_names(std::string_view table_name) const {
    std::vector<std::string> names;
    auto symtab = section(table_name);
    auto all = sections();
    if (!symtab || symtab->sh_link >= all.size()) return names;
    for (const auto& sym : table<Elf64_Sym>(symtab->sh_offset, symtab->sh_size / sizeof(Elf64_Sym))) {
      std::string_view name = string_at(all[symtab->sh_link], sym.st_name);
      names.emplace_back(name.substr(0, name.find('@')));
    }
    return names;
  }

  // Every NUL-terminated string of a string section such as ".debug_str".
  std::vector<std::string_view> strings(std::string_view section_name) const {
    std::vector<std::string_view> out;
    auto s = section(section_name);
    if (!s) return out;
    for (uint64_t at = 0; at < s->sh_size;) {
      std::string_view str = string_at(*s, at);
      out.push_back(str);
      at += str.size() + 1;
    }
    return out;
  }

 private:
  std::span<const char> range(uint64_t offset, uint64_t size) const {
    if (offset > bytes_.size() || size > bytes_.size() - offset) return {};
    return std::span<const char>(bytes_).subspan(offset, size);
  }

  // count entries of T at offset, copied out (the file's bytes need not be aligned for T).
  template <typename T>
  std::vector<T> table(uint64_t offset, uint64_t count) const {
    if (count > bytes_.size() / sizeof(T)) return {};
    auto bytes = range(offset, count * sizeof(T));
    std::vector<T> out(bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
    return out;
  }

  // The string at offset in a string table section; empty when out of bounds or unterminated.
  std::string_view string_at(const Elf64_Shdr& strtab, uint64_t offset) const {
    auto bytes = range(strtab.sh_offset, strtab.sh_size);
    if (offset >= bytes.size()) return {};
    std::string_view rest(bytes.data() + offset, bytes.size() - offset);
    auto end = rest.find('\0');
    return end == std::string_view::npos ? std::string_view{} : rest.substr(0, end);
  }

  std::vector<char> bytes_;
  Elf64_Ehdr header_{};
  bool valid_ = false;
};

std::string ember_path() {
  const char* env = std::getenv("EMBER_BIN");
  return env && *env ? env : EMBER_BINARY;
}

struct Binary {
  std::string name, path;
  bool shows_fortify;  // ember's code makes fortified calls; the jailer's has none to show
};

void PrintTo(const Binary& binary, std::ostream* out) { *out << binary.path; }
std::string binary_name(const ::testing::TestParamInfo<Binary>& info) { return info.param.name; }

class Hardening : public ::testing::TestWithParam<Binary> {
 protected:
  void SetUp() override { ASSERT_TRUE(elf_.valid()) << GetParam().path << " is missing or not an ELF64 file"; }

  // Each file is read once for all the tests.
  static const ElfFile& read(const std::string& path) {
    static std::map<std::string, ElfFile> files;
    auto it = files.find(path);
    if (it == files.end()) it = files.emplace(path, ElfFile(path)).first;
    return it->second;
  }

  std::vector<std::string> all_symbols() const {
    auto names = elf_.symbol_names(".symtab");
    auto dyn = elf_.symbol_names(".dynsym");
    names.insert(names.end(), dyn.begin(), dyn.end());
    return names;
  }

  const ElfFile& elf_ = read(GetParam().path);
};

INSTANTIATE_TEST_SUITE_P(Build, Hardening,
                         ::testing::Values(Binary{"ember", ember_path(), true},
                                           Binary{"ember_jailer", EMBER_JAILER_BINARY, false}),
                         binary_name);

TEST_P(Hardening, IsPositionIndependent) {
  EXPECT_EQ(elf_.header().e_type, ET_DYN) << "ET_EXEC: linked without -pie/-static-pie, its code at a fixed address";
}

TEST_P(Hardening, IsStaticWithoutAnInterpreter) {
  if (!EMBER_EXPECT_STATIC) GTEST_SKIP() << "built with EMBER_STATIC=OFF";
  EXPECT_FALSE(elf_.segment(PT_INTERP)) << "PT_INTERP: dynamically linked";
}

TEST_P(Hardening, HasFullRelro) {
  EXPECT_TRUE(elf_.segment(PT_GNU_RELRO)) << "no PT_GNU_RELRO (link with -z relro)";
  bool bind_now = (elf_.dynamic(DT_FLAGS).value_or(0) & DF_BIND_NOW) != 0 ||
                  (elf_.dynamic(DT_FLAGS_1).value_or(0) & DF_1_NOW) != 0;
  EXPECT_TRUE(bind_now) << "no BIND_NOW in the dynamic section (link with -z now)";
}

TEST_P(Hardening, StackIsNotExecutable) {
  auto stack = elf_.segment(PT_GNU_STACK);
  ASSERT_TRUE(stack) << "no PT_GNU_STACK: the kernel would make the stack executable";
  EXPECT_EQ(stack->p_flags & PF_X, 0u);
}

// __stack_chk_fail alone proves nothing (glibc's own code uses it), so the compiler's record
// of its flags (DW_AT_producer, in .debug_str) is read for ember's own units, the C++20 ones
// (libstdc++'s are built as C++17 or older).
TEST_P(Hardening, OwnCodeHasTheStackProtector) {
  auto symbols = all_symbols();
  EXPECT_NE(std::find(symbols.begin(), symbols.end(), "__stack_chk_fail"), symbols.end());
  auto debug_strings = elf_.strings(".debug_str");
  if (debug_strings.empty()) GTEST_SKIP() << "no debug information to read the compile flags from";
  int own_units = 0;
  for (std::string_view s : debug_strings) {
    if (!s.starts_with("GNU C++") || s.find("-std=c++20") == std::string_view::npos) continue;
    ++own_units;
    EXPECT_NE(s.find("-fstack-protector-strong"), std::string_view::npos) << "compiled without it: " << s;
  }
  EXPECT_GT(own_units, 0) << "no DW_AT_producer of a C++20 unit in .debug_str";
}

// glibc's libc.a is not fortified itself, so a __*_chk function in the binary (other than
// the stack protector's) was called by fortified code: ember's. The jailer's code happens to
// make no call that FORTIFY rewrites, so there is nothing to see in its symbols.
TEST_P(Hardening, OwnCodeIsFortified) {
  if (!EMBER_EXPECT_FORTIFY) GTEST_SKIP() << "FORTIFY is off in sanitized and Debug builds";
  if (!GetParam().shows_fortify) GTEST_SKIP() << "no fortified call in this binary's code to look for";
  std::vector<std::string> fortified;
  for (const auto& name : all_symbols()) {
    if (name.starts_with("__") && name.ends_with("_chk") && !name.starts_with("__stack_chk")) fortified.push_back(name);
  }
  EXPECT_FALSE(fortified.empty()) << "no __*_chk function: compiled without -D_FORTIFY_SOURCE";
}

}  // namespace
