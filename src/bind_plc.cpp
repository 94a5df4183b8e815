// Packet-loss concealment binding. Frames are C-contiguous int16 arrays, never converted:
// a wrong dtype is a TypeError. Per-frame work is microseconds, so the GIL is kept.

#include <cstdint>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/plc.hpp"

namespace voxwire::bindings {
namespace {

using Frame = py::array_t<std::int16_t, py::array::c_style>;

std::span<std::int16_t> writable(Frame& a, const char* what) {
  if (!a.writeable()) throw py::value_error(std::string(what) + " must be writeable");
  return {a.mutable_data(), static_cast<std::size_t>(a.size())};
}

}  // namespace

void bind_plc(py::module_& m) {
  py::class_<plc::Concealer>(m, "Concealer", R"doc(
Packet-loss concealment for decoded PCM16, in the spirit of ITU-T G.711 Appendix I.

Feed every correctly decoded frame to good(); for each lost frame call conceal(). The gap is
filled by repeating the last pitch period (5-15 ms, by normalised cross-correlation), widened
to two and three periods as the loss goes on, at full level for 10 ms and then fading 20 %
per 10 ms to silence at 60 ms. The first good frame after a loss is cross-faded with the
continued synthesis (4 ms, plus 4 ms per further 10 ms lost, at most 10 ms). No output is
delayed: concealment adds no latency.

Parameters
----------
sample_rate : int
    8000 to 48000 Hz.
)doc")
      .def(py::init<std::uint32_t>(), py::arg("sample_rate"))
      .def(
          "good",
          [](plc::Concealer& self, Frame frame) {
            self.good(writable(frame, "frame"));
            return frame;
          },
          py::arg("frame").noconvert(),
          "Record a decoded frame (int16 array, any length); after a loss its start is "
          "cross-faded in place. Returns the same array.")
      .def(
          "conceal",
          [](plc::Concealer& self, py::ssize_t samples, std::optional<Frame> out) {
            if (samples < 0) {
              throw py::value_error("conceal: samples must be >= 0, got " + std::to_string(samples));
            }
            Frame result = out ? *out : Frame(samples);
            if (result.size() != samples) {
              throw py::value_error("conceal: out must hold " + std::to_string(samples) +
                                    " samples, got " + std::to_string(result.size()));
            }
            self.conceal(writable(result, "out"));
            return result;
          },
          py::arg("samples"), py::kw_only(), py::arg("out").noconvert() = py::none(),
          "Return `samples` samples of concealment for a lost frame (written to `out` if "
          "given).")
      .def("reset", &plc::Concealer::reset, "Forget all history, as at construction.")
      .def_property_readonly("sample_rate", &plc::Concealer::sample_rate)
      .def_property_readonly("pitch", &plc::Concealer::pitch,
                             "Pitch period (samples) of the current or last concealment; 0 "
                             "before any.")
      .def_property_readonly("concealed_in_loss", &plc::Concealer::concealed_in_loss,
                             "Samples concealed in the current loss (0 after a good frame).");
}

}  // namespace voxwire::bindings
