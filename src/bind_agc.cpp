// Gain control binding. Samples are C-contiguous int16 arrays taken without conversion (a
// wrong dtype is a TypeError). A 20 ms frame costs about a microsecond, so per-frame calls
// keep the GIL; blocks of a second and more release it (bench/bench_agc.py).

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/agc.hpp"

namespace voxwire::bindings {
namespace {

using Int16Array = py::array_t<std::int16_t, py::array::c_style>;

// Blocks of at least this many samples run with the GIL released: the input and output
// arrays are kept alive by their references, and the gain control is not shared across
// threads by contract.
constexpr py::ssize_t kReleaseGilSamples = 16000;

std::span<const std::int16_t> samples_of(const Int16Array& a) {
  if (a.ndim() != 1) {
    throw py::value_error("agc: expected a 1-D int16 array, got " + std::to_string(a.ndim()) +
                          " dimensions");
  }
  return {a.data(), static_cast<std::size_t>(a.size())};
}

Int16Array process(agc::Agc& self, const Int16Array& samples, std::optional<Int16Array> out) {
  const auto in = samples_of(samples);
  Int16Array result = out ? *out : Int16Array(samples.size());
  if (result.ndim() != 1 || result.size() != samples.size()) {
    throw py::value_error("agc: out must be a 1-D int16 array of " +
                          std::to_string(samples.size()) + " samples, got " +
                          std::to_string(result.size()));
  }
  if (!result.writeable()) throw py::value_error("agc: out must be writeable");
  const std::span<std::int16_t> dst(result.mutable_data(), in.size());
  if (samples.size() >= kReleaseGilSamples) {
    py::gil_scoped_release release;
    self.process(in, dst);
  } else {
    self.process(in, dst);
  }
  return result;
}

}  // namespace

void bind_agc(py::module_& m) {
  // Plain `type` as the metaclass, so the hand-kept stub describes the class exactly.
  const auto plain_type = py::metaclass(py::reinterpret_borrow<py::object>(
      reinterpret_cast<PyObject*>(&PyType_Type)));

  py::class_<agc::Agc>(m, "AgcCore", plain_type, "Streaming gain control (see voxwire.Agc).")
      .def(py::init([](int rate, double target_dbfs, double max_gain_db, double min_gain_db,
                       double initial_gain_db, double ceiling_dbfs, double rise_db_per_s,
                       double fall_db_per_s, double level_window_s, double limiter_release_ms,
                       double vad_sensitivity) {
             agc::Config c;
             c.sample_rate = rate;
             c.target_dbfs = target_dbfs;
             c.max_gain_db = max_gain_db;
             c.min_gain_db = min_gain_db;
             c.initial_gain_db = initial_gain_db;
             c.ceiling_dbfs = ceiling_dbfs;
             c.rise_db_per_s = rise_db_per_s;
             c.fall_db_per_s = fall_db_per_s;
             c.level_window_s = level_window_s;
             c.limiter_release_ms = limiter_release_ms;
             c.vad_sensitivity = vad_sensitivity;
             return agc::Agc(c);
           }),
           py::arg("rate"), py::kw_only(), py::arg("target_dbfs"), py::arg("max_gain_db"),
           py::arg("min_gain_db"), py::arg("initial_gain_db"), py::arg("ceiling_dbfs"),
           py::arg("rise_db_per_s"), py::arg("fall_db_per_s"), py::arg("level_window_s"),
           py::arg("limiter_release_ms"), py::arg("vad_sensitivity"))
      .def("process", &process, py::arg("samples").noconvert(), py::kw_only(),
           py::arg("out").noconvert() = py::none(),
           "Gain int16 samples (any length); return the output (written to `out` if given, "
           "which may be `samples` itself).")
      .def("reset", &agc::Agc::reset, "Forget the stream.")
      .def_property("hold", &agc::Agc::hold, &agc::Agc::set_hold)
      .def_property_readonly("frame_samples", [](const agc::Agc& a) { return a.frame_samples(); })
      .def_property_readonly("gain_db", &agc::Agc::gain_db)
      .def_property_readonly("target_gain_db", &agc::Agc::target_gain_db)
      .def_property_readonly("limiter_gain_db", &agc::Agc::limiter_gain_db)
      .def_property_readonly("speech_level_dbfs", &agc::Agc::speech_level_dbfs)
      .def_property_readonly("ceiling", &agc::Agc::ceiling)
      .def_property_readonly("samples", &agc::Agc::samples)
      .def_property_readonly("speech_frames", &agc::Agc::speech_frames)
      .def_property_readonly("limited_samples", &agc::Agc::limited_samples);
}

}  // namespace voxwire::bindings
