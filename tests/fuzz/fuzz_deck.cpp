// Deck reader: any TOML text yields a Deck or a btm::Error, nothing else (no other
// exception, no crash, no sanitizer report).
#include <cstdint>
#include <string>

#include "btm/config.hpp"
#include "btm/error.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const btm::Deck deck = btm::parse_deck(text, "fuzz.toml");
    (void)btm::to_toml(deck);  // a deck that reads must also write back
  } catch (const btm::Error&) {
  }
  return 0;
}
