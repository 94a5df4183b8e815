// Resampler bindings: voxwire._core.Resampler wraps one voxwire::resample::Resampler and a
// sample type (int16 or float32, fixed at construction). Arrays are read and written in place:
// the input must already have the stream's dtype (TypeError otherwise, never a silent copy)
// and be one-dimensional and C-contiguous (ValueError otherwise); the result is a new array
// of exactly the produced length, or `out` (or its leading slice) when given.

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/resample.hpp"

namespace voxwire::bindings {
namespace {

namespace rs = voxwire::resample;

// Blocks of at least this many input samples are converted with the GIL released. Measured
// per 20 ms chunk ("voice", voxwire bench --only resample, GIL table): releasing adds 2-10%
// (0.1-0.2 us) to every call and a 1-5 us call gives other threads nothing worth having, so
// 20 ms chunks keep the GIL; from 4096 samples (a quarter second at 16 kHz) they run.
// Safe: the input and output arrays are referenced for the duration of the call, and a
// stream object is not shared between threads (documented).
std::atomic<py::ssize_t> release_gil_samples{4096};

enum class Sample : std::uint8_t { int16, float32 };

const char* dtype_name(Sample s) { return s == Sample::int16 ? "int16" : "float32"; }

std::uint32_t checked_rate(const char* name, std::int64_t rate) {
  if (rate < rs::kMinRate || rate > rs::kMaxRate) {
    throw py::value_error(std::string(name) + " must be between " + std::to_string(rs::kMinRate) +
                          " and " + std::to_string(rs::kMaxRate) + " Hz, got " +
                          std::to_string(rate));
  }
  return static_cast<std::uint32_t>(rate);
}

Sample parse_dtype(const py::object& dtype) {
  py::dtype dt;
  try {
    dt = py::dtype::from_args(dtype);
  } catch (py::error_already_set&) {
    throw py::type_error("Resampler: dtype must be numpy.int16 or numpy.float32, got " +
                         py::repr(dtype).cast<std::string>());
  }
  if (dt.num() == py::dtype::of<std::int16_t>().num()) return Sample::int16;
  if (dt.num() == py::dtype::of<float>().num()) return Sample::float32;
  throw py::type_error("Resampler: dtype must be numpy.int16 or numpy.float32, got " +
                       py::str(dt).cast<std::string>());
}

class PyResampler {
 public:
  PyResampler(std::int64_t in_rate, std::int64_t out_rate, const std::string& quality,
              const py::object& dtype)
      : sample_(parse_dtype(dtype)),
        core_(checked_rate("in_rate", in_rate), checked_rate("out_rate", out_rate),
              rs::parse_quality(quality)) {}

  py::object process(const py::handle& x, const py::handle& out) {
    const py::array in = checked_input(x);
    const auto n = static_cast<std::size_t>(in.size());
    const std::size_t count = core_.output_size(n);
    py::array result = output("process", out, count, &in);
    if (sample_ == Sample::int16) {
      call(n, [&] {
        core_.process(std::span(static_cast<const std::int16_t*>(in.data()), n),
                      std::span(static_cast<std::int16_t*>(result.mutable_data()), count));
      });
    } else {
      call(n, [&] {
        core_.process(std::span(static_cast<const float*>(in.data()), n),
                      std::span(static_cast<float*>(result.mutable_data()), count));
      });
    }
    return result;
  }

  py::object flush(const py::handle& out) {
    const std::size_t count = core_.flush_size();
    py::array result = output("flush", out, count, nullptr);
    if (sample_ == Sample::int16) {
      core_.flush(std::span(static_cast<std::int16_t*>(result.mutable_data()), count));
    } else {
      core_.flush(std::span(static_cast<float*>(result.mutable_data()), count));
    }
    return result;
  }

  void reset() noexcept { core_.reset(); }
  [[nodiscard]] std::size_t output_size(std::int64_t n) const {
    if (n < 0) throw py::value_error("output_size: n must be >= 0, got " + std::to_string(n));
    return core_.output_size(static_cast<std::size_t>(n));
  }
  [[nodiscard]] std::size_t flush_size() const noexcept { return core_.flush_size(); }
  [[nodiscard]] const rs::Resampler& core() const noexcept { return core_; }
  [[nodiscard]] py::dtype dtype() const {
    return sample_ == Sample::int16 ? py::dtype::of<std::int16_t>() : py::dtype::of<float>();
  }
  [[nodiscard]] std::string repr() const {
    return "Resampler(in_rate=" + std::to_string(core_.in_rate()) +
           ", out_rate=" + std::to_string(core_.out_rate()) + ", quality='" +
           std::string(rs::quality_name(core_.filter().quality())) + "', dtype=numpy." +
           dtype_name(sample_) + ")";
  }

 private:
  [[nodiscard]] bool has_dtype(const py::array& a) const {
    return a.dtype().num() == (sample_ == Sample::int16 ? py::dtype::of<std::int16_t>().num()
                                                        : py::dtype::of<float>().num());
  }

  [[nodiscard]] py::array checked_input(const py::handle& x) const {
    if (!py::isinstance<py::array>(x)) {
      throw py::type_error(std::string("process: expected a numpy ") + dtype_name(sample_) +
                           " array, got " + py::str(py::type::of(x).attr("__name__")).cast<std::string>());
    }
    auto a = py::reinterpret_borrow<py::array>(x);
    if (!has_dtype(a)) {
      throw py::type_error(std::string("process: expected a numpy array of dtype ") +
                           dtype_name(sample_) + " (this Resampler's dtype), got dtype " +
                           py::str(a.dtype()).cast<std::string>());
    }
    if (a.ndim() != 1) {
      throw py::value_error("process: expected a 1-D array of mono samples, got " +
                            std::to_string(a.ndim()) + " dimensions");
    }
    if ((a.flags() & py::array::c_style) == 0) {
      throw py::value_error(
          "process: expected a C-contiguous array, got strides " +
          py::str(a.attr("strides")).cast<std::string>() + " (use numpy.ascontiguousarray)");
    }
    return a;
  }

  // `out` when given (checked; its leading `count` elements if longer), else a new array.
  py::array output(const char* fn, const py::handle& out, std::size_t count,
                   const py::array* in) const {
    const auto n = static_cast<py::ssize_t>(count);
    if (out.is_none()) {
      if (sample_ == Sample::int16) return py::array_t<std::int16_t>(n);
      return py::array_t<float>(n);
    }
    if (!py::isinstance<py::array>(out)) {
      throw py::type_error(std::string(fn) + ": out must be a numpy " + dtype_name(sample_) +
                           " array, got " + py::str(py::type::of(out).attr("__name__")).cast<std::string>());
    }
    auto a = py::reinterpret_borrow<py::array>(out);
    if (!has_dtype(a)) {
      throw py::type_error(std::string(fn) + ": out must have dtype " + dtype_name(sample_) +
                           ", got dtype " + py::str(a.dtype()).cast<std::string>());
    }
    if (a.ndim() != 1 || (a.flags() & py::array::c_style) == 0 || !a.writeable()) {
      throw py::value_error(std::string(fn) + ": out must be a writeable 1-D C-contiguous array");
    }
    if (a.size() < n) {
      throw py::value_error(std::string(fn) + ": out must hold at least " + std::to_string(n) +
                            " samples, got " + std::to_string(a.size()));
    }
    if (in != nullptr && n > 0 && in->size() > 0) {
      const auto* o = static_cast<const char*>(a.data());
      const auto* i = static_cast<const char*>(in->data());
      if (o < i + in->nbytes() && i < o + n * a.itemsize()) {
        throw py::value_error(std::string(fn) + ": out must not overlap the input");
      }
    }
    if (a.size() == n) return a;
    return py::reinterpret_steal<py::array>(
        PySequence_GetSlice(a.ptr(), 0, n));  // a view of the leading samples
  }

  template <class F>
  static void call(std::size_t n, F&& work) {
    if (static_cast<py::ssize_t>(n) >= release_gil_samples.load(std::memory_order_relaxed)) {
      py::gil_scoped_release release;
      work();
    } else {
      work();
    }
  }

  Sample sample_;
  rs::Resampler core_;
};

constexpr const char* kClassDoc =
    "Streaming sample-rate converter for one mono stream (native core of\n"
    "voxwire.Resampler; see there).";

constexpr const char* kProcessDoc =
    "process(x, /, *, out=None)\n\n"
    "Convert the next chunk of the stream.\n\n"
    "Parameters\n----------\n"
    "x : numpy.ndarray\n"
    "    1-D C-contiguous samples of this Resampler's dtype, any length (0 included).\n"
    "out : numpy.ndarray, optional\n"
    "    Filled with the result and returned (its leading slice if longer); must hold at\n"
    "    least ``output_size(len(x))`` samples of the same dtype.\n\n"
    "Returns\n-------\n"
    "numpy.ndarray\n"
    "    Exactly ``output_size(len(x))`` output samples.\n\n"
    "Raises\n------\n"
    "TypeError\n    `x` or `out` is not a numpy array of this Resampler's dtype.\n"
    "ValueError\n    Not 1-D or not C-contiguous, `out` too short or overlapping `x`.\n";

constexpr const char* kFlushDoc =
    "flush(*, out=None)\n\n"
    "End the stream: return the samples still owed and start a new stream.\n\n"
    "The input is completed with ``latency * in_rate`` zeros, so the whole stream totals\n"
    "``ceil(n * out_rate / in_rate)`` samples for ``n`` input samples. The Resampler is then\n"
    "back in its initial state (``clipped`` keeps counting).\n\n"
    "Parameters\n----------\n"
    "out : numpy.ndarray, optional\n"
    "    As for :meth:`process`; must hold at least ``flush_size()`` samples.\n\n"
    "Returns\n-------\n"
    "numpy.ndarray\n"
    "    Exactly ``flush_size()`` samples.\n";

}  // namespace

void bind_resample(py::module_& m) {
  m.def(
      "_resample_release_gil_samples",
      [](const py::object& samples) {
        if (samples.is_none()) return release_gil_samples.load();
        const auto n = samples.cast<py::ssize_t>();
        if (n < 0) throw py::value_error("samples must be >= 0, got " + std::to_string(n));
        return release_gil_samples.exchange(n);
      },
      py::arg("samples") = py::none(),
      "Block size from which Resampler.process releases the GIL; sets it when given and\n"
      "returns the previous value (for the benchmark, not part of the API).");
  py::class_<PyResampler>(m, "Resampler", kClassDoc)
      .def(py::init<std::int64_t, std::int64_t, const std::string&, const py::object&>(),
           py::arg("in_rate"), py::arg("out_rate"), py::arg("quality") = "voice",
           py::arg("dtype") = py::dtype::of<std::int16_t>())
      .def("process", &PyResampler::process, py::arg("x"), py::pos_only(), py::kw_only(),
           py::arg("out") = py::none(), kProcessDoc)
      .def("flush", &PyResampler::flush, py::kw_only(), py::arg("out") = py::none(), kFlushDoc)
      .def("reset", &PyResampler::reset,
           "Return to the initial state (history, counters and ``clipped``); keeps the\n"
           "filter and does not allocate.")
      .def("output_size", &PyResampler::output_size, py::arg("n"),
           "Exactly how many samples :meth:`process` returns for the next `n` input samples.")
      .def("flush_size", &PyResampler::flush_size,
           "Exactly how many samples :meth:`flush` returns now.")
      .def_property_readonly(
          "in_rate", [](const PyResampler& r) { return r.core().in_rate(); },
          "Input sample rate in Hz.")
      .def_property_readonly(
          "out_rate", [](const PyResampler& r) { return r.core().out_rate(); },
          "Output sample rate in Hz.")
      .def_property_readonly(
          "quality",
          [](const PyResampler& r) {
            return std::string(rs::quality_name(r.core().filter().quality()));
          },
          "The quality preset: 'voice' or 'high'.")
      .def_property_readonly("dtype", &PyResampler::dtype,
                             "Sample dtype of input and output: int16 or float32.")
      .def_property_readonly(
          "latency", [](const PyResampler& r) { return r.core().latency(); },
          "Total delay in seconds (filter lookahead / in_rate): the output sample for an\n"
          "input instant appears once the input this much later has been processed.")
      .def_property_readonly(
          "clipped", [](const PyResampler& r) { return r.core().clipped(); },
          "int16 output samples saturated to [-32768, 32767] since construction or reset().")
      .def_property_readonly(
          "samples_in", [](const PyResampler& r) { return r.core().samples_in(); },
          "Input samples consumed in the current stream.")
      .def_property_readonly(
          "samples_out", [](const PyResampler& r) { return r.core().samples_out(); },
          "Output samples produced in the current stream.")
      .def_property_readonly(
          "taps", [](const PyResampler& r) { return r.core().filter().taps(); },
          "Filter taps per polyphase branch (input samples under the window).")
      .def("__repr__", &PyResampler::repr);
}

}  // namespace voxwire::bindings
