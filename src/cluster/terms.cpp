// C-BTM's word tokenisation (include/btm/cluster/terms.hpp): Python's str.lower() and
// (?u)\b\w\w+\b over UTF-8, with Unicode tables cut down to the scripts listed there.
#include "btm/cluster/terms.hpp"
#include "btm/data/utf8.hpp"

#include <cstdint>

namespace btm::cluster {

namespace {

constexpr char32_t kInvalid = 0xFFFFFFFF;

// The next code point of `s` at `i` (advancing i); kInvalid for a malformed sequence.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto byte = [&](std::size_t j) { return static_cast<unsigned char>(s[j]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int extra = b0 >= 0xF0 && b0 < 0xF5 ? 3 : b0 >= 0xE0 ? 2 : b0 >= 0xC2 && b0 < 0xE0 ? 1 : -1;
  if (b0 >= 0xF5) extra = -1;
  if (extra < 0 || s.size() - i <= static_cast<std::size_t>(extra)) {
    ++i;
    return kInvalid;
  }
  char32_t cp = b0 & (extra == 1 ? 0x1F : extra == 2 ? 0x0F : 0x07);
  for (int k = 1; k <= extra; ++k) {
    const unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return kInvalid;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  const bool overlong = (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000);
  if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return kInvalid;
  }
  i += extra + 1;
  return cp;
}

bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

// str.lower() of one code point, for the scripts listed in terms.hpp.
char32_t lower(char32_t c) {
  if (c < 0x80) return in(c, 'A', 'Z') ? c + 32 : c;
  if (in(c, 0xC0, 0xDE) && c != 0xD7) return c + 32;
  if (c < 0x100) return c;
  if (c == 0x130) return 'i';  // Python gives "i" + U+0307; the mark would end the word
  if (in(c, 0x100, 0x137) || in(c, 0x14A, 0x177)) return c % 2 == 0 ? c + 1 : c;
  if (in(c, 0x139, 0x148) || in(c, 0x179, 0x17E)) return c % 2 == 1 ? c + 1 : c;
  if (c == 0x178) return 0xFF;
  if (in(c, 0x1CD, 0x1DC)) return c % 2 == 1 ? c + 1 : c;
  if (in(c, 0x1DE, 0x1EF) || in(c, 0x1F8, 0x21F) || in(c, 0x222, 0x233) || in(c, 0x246, 0x24F)) {
    return c % 2 == 0 ? c + 1 : c;
  }
  if (c == 0x1C4 || c == 0x1C7 || c == 0x1CA || c == 0x1F1) return c + 2;
  if (c == 0x1C5 || c == 0x1C8 || c == 0x1CB || c == 0x1F2 || c == 0x1F4) return c + 1;
  if (c == 0x386) return 0x3AC;
  if (in(c, 0x388, 0x38A)) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (in(c, 0x391, 0x3A1) || in(c, 0x3A3, 0x3AB)) return c + 32;
  if (in(c, 0x3D8, 0x3EF)) return c % 2 == 0 ? c + 1 : c;
  if (in(c, 0x400, 0x40F)) return c + 80;
  if (in(c, 0x410, 0x42F)) return c + 32;
  if (in(c, 0x460, 0x481) || in(c, 0x48A, 0x4BF) || in(c, 0x4D0, 0x52F)) return c % 2 == 0 ? c + 1 : c;
  if (c == 0x4C0) return 0x4CF;
  if (in(c, 0x4C1, 0x4CE)) return c % 2 == 1 ? c + 1 : c;
  if (in(c, 0x531, 0x556)) return c + 48;
  if (in(c, 0x1E00, 0x1E95) || in(c, 0x1EA0, 0x1EFF)) return c % 2 == 0 ? c + 1 : c;
  return c;
}

// Python's \w (str.isalnum() or '_') for the scripts listed in terms.hpp; elsewhere letters
// of other scripts count, punctuation, symbol and emoji blocks do not.
bool is_word(char32_t c) {
  if (c < 0x80) return in(c, 'a', 'z') || in(c, 'A', 'Z') || in(c, '0', '9') || c == '_';
  if (c < 0xC0) {
    return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA || in(c, 0xBC, 0xBE);
  }
  if (c < 0x250) return c != 0xD7 && c != 0xF7;
  if (c < 0x300) return in(c, 0x250, 0x2C1) || in(c, 0x2C6, 0x2D1) || in(c, 0x2E0, 0x2E4) || c == 0x2EC || c == 0x2EE;
  if (c < 0x370) return false;  // combining marks
  if (c < 0x400) {
    return !(c == 0x375 || c == 0x37E || c == 0x384 || c == 0x385 || c == 0x387 || c == 0x3F6 || in(c, 0x378, 0x379) ||
             in(c, 0x380, 0x383) || c == 0x38B || c == 0x38D || c == 0x3A2);
  }
  if (c < 0x530) return !in(c, 0x482, 0x489);
  if (c >= 0x900 && c < 0xD80) {
    // Brahmic blocks (Devanagari ... Malayalam) share a layout: signs, vowel signs, virama
    // and nukta are combining marks (not \w in Python), avagraha and OM letters, then
    // punctuation (danda) and digits.
    const char32_t off = (c - 0x900) % 0x80;
    return !(off <= 0x03 || (in(off, 0x3A, 0x4F) && off != 0x3D) || in(off, 0x51, 0x57) || in(off, 0x62, 0x65) ||
             off == 0x70);
  }
  if (c < 0x2000) {
    return !(in(c, 0x55A, 0x55F) || in(c, 0x589, 0x58A) || in(c, 0x591, 0x5C7) || in(c, 0x600, 0x61F) ||
             in(c, 0x64B, 0x65F) || in(c, 0x66A, 0x66D) || c == 0x6D4 || in(c, 0x964, 0x965) || in(c, 0x1AB0, 0x1AFF) ||
             in(c, 0x1DC0, 0x1DFF) || c == 0x1FBD || in(c, 0x1FBF, 0x1FC1) || in(c, 0x1FCD, 0x1FCF) ||
             in(c, 0x1FDD, 0x1FDF) || in(c, 0x1FED, 0x1FEF) || in(c, 0x1FFD, 0x1FFE));
  }
  if (c < 0x2C00) {
    return c == 0x2070 || c == 0x2071 || in(c, 0x2074, 0x2079) || in(c, 0x207F, 0x2089) || in(c, 0x2090, 0x209C) ||
           in(c, 0x2150, 0x2189) || in(c, 0x2460, 0x249B) || in(c, 0x24EA, 0x24FF) || in(c, 0x2776, 0x2793);
  }
  if (c < 0x2E00) return true;
  if (c < 0x3040) {
    return in(c, 0x3005, 0x3007) || in(c, 0x3021, 0x3029) || in(c, 0x3031, 0x3035) || in(c, 0x3038, 0x303C);
  }
  if (c < 0xD800) return !(in(c, 0x3099, 0x309C) || c == 0x30A0 || c == 0x30FB || in(c, 0x4DC0, 0x4DFF));
  if (c < 0xF900) return false;  // private use
  if (c < 0xFE00) return !in(c, 0xFD3E, 0xFD3F);
  if (c < 0xFE70) return false;
  if (c < 0xFF00) return c != 0xFEFF;
  if (c < 0xFFF0) return in(c, 0xFF10, 0xFF19) || in(c, 0xFF21, 0xFF3A) || in(c, 0xFF41, 0xFF5A) || in(c, 0xFF66, 0xFFDC);
  if (c < 0x10000) return false;
  return !(in(c, 0x1F000, 0x1FAFF) || c >= 0xE0000);
}

// str.isdigit() of a word's first character.
bool is_digit(char32_t c) {
  return in(c, '0', '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 || in(c, 0x660, 0x669) || in(c, 0x6F0, 0x6F9) ||
         in(c, 0x966, 0x96F) || c == 0x2070 || in(c, 0x2074, 0x2079) || in(c, 0x2080, 0x2089) || in(c, 0x2460, 0x2468) ||
         in(c, 0xFF10, 0xFF19);
}

}  // namespace

void scan_words(std::string_view text, const std::function<void(std::string_view)>& emit) {
  std::string word;
  std::size_t length = 0;  // code points in `word`
  char32_t first = 0;
  auto finish = [&] {
    if (length >= 2) emit(is_digit(first) ? kNumberTerm : std::string_view(word));
    word.clear();
    length = 0;
  };
  std::size_t i = 0;
  while (i < text.size()) {
    const char32_t raw = next_code_point(text, i);
    const bool combining_dot = raw == 0x130;  // lowercases to "i" + a mark that ends the word
    const char32_t c = raw == kInvalid ? kInvalid : lower(raw);
    if (c == kInvalid || !is_word(c)) {
      finish();
      continue;
    }
    if (length == 0) first = c;
    append_utf8(word, c);
    ++length;
    if (combining_dot) finish();
  }
  finish();
}

std::vector<std::string> word_tokens(std::string_view text) {
  std::vector<std::string> out;
  scan_words(text, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

std::vector<std::string> terms(std::string_view text) {
  std::vector<std::string> out;
  for_each_term(text, [&](std::string_view t) { out.emplace_back(t); });
  return out;
}

}  // namespace btm::cluster
