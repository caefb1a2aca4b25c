// JSONL corpus reader: any bytes as a .jsonl file (or .jsonl.gz when they start with the
// gzip magic) yield documents or a btm::Error naming the file, nothing else.
#include <cstdint>
#include <string>

#include "btm/data/corpus.hpp"
#include "btm/error.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const auto path = btm::fuzz::scratch_file(gz ? "corpus.jsonl.gz" : "corpus.jsonl", data, size);
  try {
    btm::for_each_document(path, btm::CorpusFormat::jsonl, [](btm::RawDocument& doc) {
      // What prepare asks of every document next.
      (void)btm::is_valid_utf8(doc.text);
      (void)btm::is_blank(doc.text);
      if (doc.id.empty()) (void)btm::fallback_document_id(doc.domain, doc.text);
    });
  } catch (const btm::Error&) {
  }
  return 0;
}
