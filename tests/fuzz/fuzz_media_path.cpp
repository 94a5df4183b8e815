// libFuzzer target for the strict base64 decoder and the inbound media path.
//
// The first byte picks an encoding and a pair of rates; the rest is the payload text. The
// decoder and the validator must agree; a valid text must re-encode to itself (strictness
// means one text per byte string); Inbound must either refuse the payload with PayloadError
// or write exactly output_size() samples, never past its output.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "voxwire/media_path.hpp"

namespace media = voxwire::media;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<std::uint8_t> bytes(media::base64_decoded_size(text));
  const media::Base64Result r = media::decode_base64(text, bytes);
  const media::Base64Result v = media::validate_base64(text);
  require(r.fault == v.fault && r.position == v.position);
  if (r.fault == media::PayloadFault::none) {
    require(r.size == bytes.size());
    std::string again(media::base64_encoded_size(r.size), '\0');
    media::encode_base64(bytes, std::span<char>(again.data(), again.size()));
    require(again == text);
  } else {
    require(r.position <= text.size());
  }

  static const std::uint32_t rates[][2] = {{8000, 16000}, {8000, 8000}, {16000, 8000}, {8000, 48000}};
  const auto encoding = static_cast<media::Encoding>(selector & 3);
  const auto* pair = rates[(selector >> 2) & 3];
  media::Inbound in(encoding, pair[0], pair[1]);
  std::size_t need = 0;
  try {
    need = in.output_size(text);
  } catch (const media::PayloadError&) {
    return 0;
  }
  std::vector<std::int16_t> out(need + 1, 0x5A5A);
  try {
    require(in.decode(text, out) == need);
    require(r.fault == media::PayloadFault::none);
  } catch (const media::PayloadError& e) {
    // Valid base64 of an odd byte count is still not whole L16 samples.
    require(e.fault() == r.fault ||
            (e.fault() == media::PayloadFault::odd_length && r.fault == media::PayloadFault::none));
  }
  require(out[need] == 0x5A5A);
  return 0;
}
