// Time-stretching binding. Frames are C-contiguous int16 arrays, never converted: a wrong
// dtype is a TypeError. Each call returns a new array and what was done.

#include <cstdint>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/stretch.hpp"

namespace voxwire::bindings {
namespace {

using Frame = py::array_t<std::int16_t, py::array::c_style>;

// The frame's samples; ValueError unless it is 1-D and at most max_frame long.
std::span<const std::int16_t> frame_of(const stretch::Stretcher& self, const Frame& a) {
  if (a.ndim() != 1) throw py::value_error("frame must be 1-D");
  const std::span<const std::int16_t> in(a.data(), static_cast<std::size_t>(a.size()));
  if (in.size() > self.config().max_frame) {
    throw py::value_error("frame of " + std::to_string(in.size()) +
                          " samples is longer than max_frame (" +
                          std::to_string(self.config().max_frame) + ")");
  }
  return in;
}

template <typename Op>
py::tuple apply(stretch::Stretcher& self, const Frame& frame, std::size_t extra, Op op) {
  const auto in = frame_of(self, frame);
  Frame out(static_cast<py::ssize_t>(in.size() + extra));
  const stretch::Result r =
      op(in, std::span<std::int16_t>(out.mutable_data(), static_cast<std::size_t>(out.size())));
  return py::make_tuple(out[py::slice(0, static_cast<py::ssize_t>(r.size), 1)], r.period,
                        r.correlation);
}

}  // namespace

void bind_stretch(py::module_& m) {
  py::class_<stretch::Stretcher>(m, "Stretcher")
      .def(py::init([](std::uint32_t sample_rate, std::size_t max_frame, double min_period_ms,
                       double max_period_ms, double min_correlation, std::int32_t min_level) {
             stretch::Config c;
             c.sample_rate = sample_rate;
             c.max_frame = max_frame;
             c.min_period_ms = min_period_ms;
             c.max_period_ms = max_period_ms;
             c.min_correlation = min_correlation;
             c.min_level = min_level;
             try {
               return stretch::Stretcher(c);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("sample_rate"), py::arg("max_frame"), py::arg("min_period_ms"),
           py::arg("max_period_ms"), py::arg("min_correlation"), py::arg("min_level"))
      .def(
          "shorten",
          [](stretch::Stretcher& self, const Frame& frame) {
            return apply(self, frame, 0, [&](auto in, auto out) { return self.shorten(in, out); });
          },
          py::arg("frame").noconvert())
      .def(
          "lengthen",
          [](stretch::Stretcher& self, const Frame& frame) {
            return apply(self, frame, self.max_period(),
                         [&](auto in, auto out) { return self.lengthen(in, out); });
          },
          py::arg("frame").noconvert())
      .def(
          "cut",
          [](stretch::Stretcher& self, const Frame& frame, std::size_t count) {
            if (count > static_cast<std::size_t>(frame.size()) / 2) {
              throw py::value_error("cut: count " + std::to_string(count) +
                                    " is more than half the frame");
            }
            return apply(self, frame, 0,
                         [&](auto in, auto out) { return self.cut(in, out, count); });
          },
          py::arg("frame").noconvert(), py::arg("count"))
      .def(
          "period",
          [](stretch::Stretcher& self, const Frame& frame) {
            const auto [p, c] = self.period(frame_of(self, frame));
            return py::make_tuple(p, c);
          },
          py::arg("frame").noconvert())
      .def_property_readonly("max_period",
                             [](const stretch::Stretcher& self) { return self.max_period(); });
}

}  // namespace voxwire::bindings
