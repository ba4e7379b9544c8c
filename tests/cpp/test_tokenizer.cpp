// The C++ tokenizer against golden ids from the official Python tokenizer
// (tests/cpp/data/gen_tokenizer_cases.py), plus its error and length handling.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sam3/error.h"
#include "sam3/tokenizer.h"

namespace {

// The vocabulary ships in the open_clip wheel of the project venv; SAM3_VOCAB
// overrides. Not found is a failure, not a skip: the golden test must run.
std::string vocab_path() {
  if (const char* env = std::getenv("SAM3_VOCAB")) return env;
  const std::filesystem::path lib = std::filesystem::path(SAM3_SOURCE_DIR) / ".venv" / "lib";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(lib, ec)) {
    const auto candidate =
        entry.path() / "site-packages" / "open_clip" / "bpe_simple_vocab_16e6.txt.gz";
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  return (lib / "python3/site-packages/open_clip/bpe_simple_vocab_16e6.txt.gz").string();
}

const std::string kVocab = vocab_path();

const sam3::Tokenizer& tokenizer() {
  static const sam3::Tokenizer tok(kVocab);
  return tok;
}

struct Case {
  std::string text;
  std::vector<int64_t> ids;
};

std::vector<Case> golden_cases() {
  std::ifstream in(std::string(SAM3_TEST_DATA_DIR) + "/tokenizer_cases.json");
  EXPECT_TRUE(in) << "missing tokenizer_cases.json";
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<Case> cases;
  for (const auto& item : j) cases.push_back({item.at("text"), item.at("ids")});
  return cases;
}

// Message of the sam3::Error `fn` throws, or "" when it throws none.
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const sam3::Error& e) {
    return e.what();
  }
  return "";
}

// Per-process names, so concurrent test runs do not trip over each other.
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(Tokenizer, GoldenCasesMatchPython) {
  const std::vector<Case> cases = golden_cases();
  ASSERT_GE(cases.size(), 40u);
  for (const Case& c : cases) {
    EXPECT_EQ(tokenizer().encode(c.text, 32), c.ids) << "text: " << nlohmann::json(c.text).dump();
  }
}

TEST(Tokenizer, BpeIsEncodeWithoutMarkers) {
  EXPECT_EQ(tokenizer().bpe("a red car"), (std::vector<int32_t>{320, 736, 1615}));
  EXPECT_TRUE(tokenizer().bpe("").empty());
  EXPECT_TRUE(tokenizer().bpe(" \t\n").empty());
  // "!" alone is "!</w>" (256); before an unmerged character it is the bare
  // byte symbol, id 0, the same value as padding.
  EXPECT_EQ(tokenizer().bpe("!"), (std::vector<int32_t>{256}));
  EXPECT_EQ(tokenizer().bpe("!~"), (std::vector<int32_t>{0, 349}));
}

TEST(Tokenizer, ContextLength) {
  const sam3::Tokenizer& tok = tokenizer();
  // Values from SimpleTokenizer(["a red car"], context_length=n).
  EXPECT_EQ(tok.encode("a red car", 1), (std::vector<int64_t>{49407}));
  EXPECT_EQ(tok.encode("a red car", 2), (std::vector<int64_t>{49406, 49407}));
  EXPECT_EQ(tok.encode("a red car", 3), (std::vector<int64_t>{49406, 320, 49407}));
  EXPECT_EQ(tok.encode("a red car", 5), (std::vector<int64_t>{49406, 320, 736, 1615, 49407}));
  std::vector<int64_t> padded{49406, 320, 736, 1615, 49407};
  padded.resize(77, 0);
  EXPECT_EQ(tok.encode("a red car", 77), padded);
  EXPECT_EQ(tok.encode("a red car", 0), padded);  // `context_length or 77`
  EXPECT_EQ(tok.encode("a red car"), tok.encode("a red car", 32));
  EXPECT_NE(error_of([&] { tok.encode("a red car", -1); }), "");
}

TEST(Tokenizer, TruncationKeepsPrefixAndEndsWithEndOfText) {
  const sam3::Tokenizer& tok = tokenizer();
  std::string text;
  for (int i = 0; i < 100; ++i) text += "a photo of ";
  const std::vector<int32_t> ids = tok.bpe(text);
  ASSERT_EQ(ids.size(), 300u);
  for (int length : {4, 32, 77, 301, 302, 400}) {
    std::vector<int64_t> expected{sam3::Tokenizer::kStartOfText};
    expected.insert(expected.end(), ids.begin(), ids.end());
    expected.push_back(sam3::Tokenizer::kEndOfText);
    if (static_cast<int>(expected.size()) > length) {
      expected.resize(length);
      expected.back() = sam3::Tokenizer::kEndOfText;
    }
    expected.resize(length, 0);
    EXPECT_EQ(tok.encode(text, length), expected) << "context_length " << length;
  }
}

// A Python str can hold surrogates and ftfy's fix_surrogates repairs them; the
// C++ side receives them as 3-byte (CESU-8 style) sequences.
TEST(Tokenizer, SurrogatesAreRepairedAsFtfyDoes) {
  EXPECT_EQ(tokenizer().bpe("\xED\xA0\xBD\xED\xB0\xB6"), tokenizer().bpe("\xF0\x9F\x90\xB6"));
  EXPECT_EQ(tokenizer().bpe("x\xED\xA0\xBD"), tokenizer().bpe("x\xEF\xBF\xBD"));
}

TEST(Tokenizer, InvalidUtf8Throws) {
  EXPECT_NE(error_of([] { tokenizer().encode(std::string("caf\xC3", 4)); }), "");
  EXPECT_NE(error_of([] { tokenizer().encode(std::string("\xFF")); }), "");
}

TEST(Tokenizer, MissingVocabNamesTheFile) {
  const std::string path = temp_path("sam3_no_such_vocab.txt.gz");
  std::filesystem::remove(path);
  const std::string message = error_of([&] { sam3::Tokenizer tok(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("not found"), std::string::npos) << message;
}

TEST(Tokenizer, NonGzipVocabNamesTheFile) {
  const std::string path = temp_path("sam3_plain_vocab.txt.gz");
  {
    std::ofstream out(path, std::ios::binary);
    out << "#version: 0.2\na b\n";
  }
  const std::string message = error_of([&] { sam3::Tokenizer tok(path); });
  std::filesystem::remove(path);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("gzip"), std::string::npos) << message;
}

TEST(Tokenizer, TruncatedGzipVocabNamesTheFile) {
  std::ifstream in(kVocab, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(data.size(), 1000u);
  const std::string path = temp_path("sam3_truncated_vocab.txt.gz");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(data.data(), 1000);
  }
  const std::string message = error_of([&] { sam3::Tokenizer tok(path); });
  std::filesystem::remove(path);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
}

TEST(Tokenizer, ShortVocabNamesTheFile) {
  const std::string path = temp_path("sam3_short_vocab.txt.gz");
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  gzputs(gz, "#version: 0.2\ni n\nt h\n");
  gzclose(gz);
  const std::string message = error_of([&] { sam3::Tokenizer tok(path); });
  std::filesystem::remove(path);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("2 merges, expected 48894"), std::string::npos) << message;
}

}  // namespace
