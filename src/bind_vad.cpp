// VAD bindings: the detector and the segmenter as pybind11 classes. Frames are C-contiguous
// int16 arrays taken without conversion (another dtype is a TypeError). The per-frame call
// returns a plain (score, flags, event_sample) tuple, the cheapest shape pybind11 can hand
// back; voxwire.vad builds the public objects from it. bench/bench_vad.py times this call
// next to webrtcvad's.

#include <cstdint>
#include <span>
#include <string>
#include <tuple>

#include "bindings.hpp"
#include "voxwire/vad.hpp"

namespace voxwire::bindings {
namespace {

namespace vad = voxwire::vad;

using Int16Array = py::array_t<std::int16_t, py::array::c_style>;
using UInt8Array = py::array_t<std::uint8_t, py::array::c_style>;
using FloatArray = py::array_t<float, py::array::c_style>;
using Int64Array = py::array_t<std::int64_t, py::array::c_style>;

// Batches of at least this many samples run with the GIL released (about 10 ms of audio at
// 16 kHz and more): the input array is kept alive by its reference and the outputs are ours,
// and the detector is not shared across threads by contract.
constexpr py::ssize_t kReleaseGilSamples = 4096;

std::span<const std::int16_t> samples_of(const Int16Array& a) {
  if (a.ndim() != 1) {
    throw py::value_error("vad: expected a 1-D int16 array, got " + std::to_string(a.ndim()) +
                          " dimensions");
  }
  return {a.data(), static_cast<std::size_t>(a.size())};
}

py::tuple process(vad::Detector& d, const Int16Array& frame) {
  const vad::FrameResult r = d.process(samples_of(frame));
  const int flags = (r.speech ? vad::kSpeech : 0) | (r.active ? vad::kActive : 0) |
                    (r.event == vad::EventKind::start ? vad::kStart : 0) |
                    (r.event == vad::EventKind::end ? vad::kEnd : 0);
  return py::make_tuple(r.score, flags, r.event_sample);
}

std::tuple<FloatArray, UInt8Array, Int64Array> process_batch(vad::Detector& d, const Int16Array& samples) {
  const auto in = samples_of(samples);
  if (in.size() % d.frame_samples() != 0) {
    throw py::value_error("vad: batch length must be a multiple of the frame length " +
                          std::to_string(d.frame_samples()) + ", got " +
                          std::to_string(in.size()) + " samples");
  }
  const auto n = static_cast<py::ssize_t>(in.size() / d.frame_samples());
  FloatArray scores(n);
  UInt8Array flags(n);
  Int64Array at(n);
  const auto count = static_cast<std::size_t>(n);
  const std::span<float> s(scores.mutable_data(), count);
  const std::span<std::uint8_t> f(flags.mutable_data(), count);
  const std::span<std::int64_t> e(at.mutable_data(), count);
  if (samples.size() >= kReleaseGilSamples) {
    py::gil_scoped_release release;
    d.process_batch(in, s, f, e);
  } else {
    d.process_batch(in, s, f, e);
  }
  return {std::move(scores), std::move(flags), std::move(at)};
}

std::tuple<UInt8Array, Int64Array> segment(vad::Segmenter& seg, const UInt8Array& speech) {
  if (speech.ndim() != 1) throw py::value_error("vad: expected a 1-D array of decisions");
  const py::ssize_t n = speech.size();
  UInt8Array flags(n);
  Int64Array samples(n);
  const std::uint8_t* in = speech.data();
  std::uint8_t* f = flags.mutable_data();
  std::int64_t* at = samples.mutable_data();
  for (py::ssize_t i = 0; i < n; ++i) {
    vad::FrameResult r;
    r.speech = in[i] != 0;
    seg.step(r.speech, r);
    f[i] = static_cast<std::uint8_t>((r.speech ? vad::kSpeech : 0) | (r.active ? vad::kActive : 0) |
                                     (r.event == vad::EventKind::start ? vad::kStart : 0) |
                                     (r.event == vad::EventKind::end ? vad::kEnd : 0));
    at[i] = r.event_sample;
  }
  return {std::move(flags), std::move(samples)};
}

}  // namespace

void bind_vad(py::module_& m) {
  m.attr("VAD_SPEECH") = static_cast<int>(vad::kSpeech);
  m.attr("VAD_ACTIVE") = static_cast<int>(vad::kActive);
  m.attr("VAD_START") = static_cast<int>(vad::kStart);
  m.attr("VAD_END") = static_cast<int>(vad::kEnd);

  // Plain `type` as the metaclass (the classes have no static properties, which is what
  // pybind11's own metaclass is for), so the hand-kept stub describes them exactly.
  const auto plain_type = py::metaclass(py::reinterpret_borrow<py::object>(
      reinterpret_cast<PyObject*>(&PyType_Type)));

  py::class_<vad::Detector>(m, "VadDetector", plain_type,
                            "Streaming voice activity detector (see voxwire.Vad).")
      .def(py::init([](int rate, int frame_ms, double sensitivity, double start_threshold,
                       double stop_threshold, int hold_ms, int min_speech_ms,
                       int hangover_ms) {
             vad::Config c;
             c.sample_rate = rate;
             c.frame_ms = frame_ms;
             c.sensitivity = sensitivity;
             c.start_threshold = start_threshold;
             c.stop_threshold = stop_threshold;
             c.hold_ms = hold_ms;
             c.min_speech_ms = min_speech_ms;
             c.hangover_ms = hangover_ms;
             return vad::Detector(c);
           }),
           py::arg("rate"), py::arg("frame_ms"), py::kw_only(), py::arg("sensitivity"),
           py::arg("start_threshold"), py::arg("stop_threshold"), py::arg("hold_ms"),
           py::arg("min_speech_ms"), py::arg("hangover_ms"))
      .def("process", &process, py::arg("frame").noconvert(),
           "Analyse one frame; return (score, flags, event_sample).")
      .def("process_batch", &process_batch, py::arg("samples").noconvert(),
           "Analyse whole frames; return (scores float32, flags uint8, event_sample int64).")
      .def("reset", &vad::Detector::reset, "Forget the stream.")
      .def_property_readonly("frame_samples",
                             [](const vad::Detector& d) { return d.frame_samples(); })
      .def_property_readonly("frames", &vad::Detector::frames)
      .def_property_readonly("active", &vad::Detector::active)
      .def_property_readonly("noise_floor_db", &vad::Detector::noise_floor_db);

  py::class_<vad::Segmenter>(m, "VadSegmenter", plain_type,
                             "Utterance segmentation of per-frame decisions from any detector.")
      .def(py::init<std::int64_t, int, int>(), py::arg("frame_samples"),
           py::arg("min_speech_frames"), py::arg("hangover_frames"))
      .def("run", &segment, py::arg("speech").noconvert(),
           "Feed uint8 decisions; return (flags uint8, event_sample int64) per frame.")
      .def("reset", &vad::Segmenter::reset)
      .def_property_readonly("active", &vad::Segmenter::active)
      .def_property_readonly("frames", &vad::Segmenter::frames);
}

}  // namespace voxwire::bindings
