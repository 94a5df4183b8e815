// Opus packet inspection bindings: the TOC/framing summary and the in-band FEC flag.
// Decoding itself goes through libopus (opuslib) in the Python layer.

#include <cstdint>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/opus_packet.hpp"

namespace voxwire::bindings {
namespace {

const char* mode_name(opus::Mode m) {
  switch (m) {
    case opus::Mode::silk: return "silk";
    case opus::Mode::hybrid: return "hybrid";
    case opus::Mode::celt: return "celt";
  }
  return "unknown";
}

}  // namespace

void bind_opus(py::module_& m) {
  m.def(
      "opus_packet_info",
      [](const py::buffer& data) {
        py::buffer_info keep;
        const auto packet = contiguous_bytes(data, keep);
        opus::PacketInfo info;
        const auto err = opus::parse(packet, info);
        if (err != opus::PacketError::ok) {
          const std::string reason(opus::to_string(err));
          raise_reasoned("OpusPacketError", reason,
                         "malformed Opus packet (" + reason + ", " +
                             std::to_string(packet.size()) + " bytes)");
        }
        return py::make_tuple(info.config, mode_name(info.mode), info.stereo, info.code,
                              info.frames, info.frame_us);
      },
      py::arg("data"),
      "(config, mode, stereo, code, frames, frame_us) of an Opus packet; raise "
      "voxwire.errors.OpusPacketError if malformed (RFC 6716 3.4).");
  m.def(
      "opus_has_lbrr",
      [](const py::buffer& data) {
        py::buffer_info keep;
        return opus::has_lbrr(contiguous_bytes(data, keep));
      },
      py::arg("data"), "True if the packet carries in-band FEC for the frame before it.");
}

}  // namespace voxwire::bindings
