// Opus packet inspection bindings: the TOC/framing summary and the in-band FEC flag.
// Decoding itself goes through libopus (opuslib) in the Python layer.

#include <cstdint>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/opus_packet.hpp"

namespace voxwire::bindings {
namespace {

std::span<const std::byte> packet_bytes(const py::buffer& data, py::buffer_info& keep) {
  keep = data.request();
  if (keep.ndim > 1 || (keep.ndim == 1 && keep.strides[0] != keep.itemsize)) {
    throw py::value_error("expected a C-contiguous bytes-like object");
  }
  return {static_cast<const std::byte*>(keep.ptr),
          static_cast<std::size_t>(keep.size * keep.itemsize)};
}

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
        const auto packet = packet_bytes(data, keep);
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
        return opus::has_lbrr(packet_bytes(data, keep));
      },
      py::arg("data"), "True if the packet carries in-band FEC for the frame before it.");
}

}  // namespace voxwire::bindings
