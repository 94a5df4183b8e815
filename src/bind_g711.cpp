// G.711 bindings.
//
// encode_ulaw / encode_alaw / decode_ulaw / decode_alaw are plain CPython METH_FASTCALL
// functions: a 20 ms telephony frame is 160 samples, so the call itself is most of the cost,
// and this entry point costs a fraction of a pybind11 dispatch (bench/g711_table.py measures
// both; the pybind11 twins below exist for that comparison). They accept any C-contiguous
// bytes-like object (result: bytes) or a numpy array (result: numpy array of the same shape),
// never copy or convert the input, and write into `out=` when given.

#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "bindings.hpp"
#include "voxwire/g711.hpp"

namespace voxwire::bindings {
namespace {

namespace g711 = voxwire::g711;

// Blocks of at least this many samples are converted with the GIL released. Below it the
// release/acquire pair (about 0.1 us) is a visible share of the work (1 s at 8 kHz takes
// a few microseconds); above it other threads get the interpreter while we work. It is safe:
// the input is pinned by its buffer export or array reference and the output is ours.
constexpr Py_ssize_t kReleaseGilSamples = 1 << 15;

enum class Law : std::uint8_t { ulaw, alaw };
enum class Kind : std::uint8_t { pcm16, code };  // what a buffer holds

const char* expected_dtype(Kind k) { return k == Kind::pcm16 ? "int16" : "uint8"; }

// The call's arguments: (data, /, *, mode='g191', out=None). `mode` only for encoders.
struct Call {
  PyObject* data = nullptr;
  PyObject* mode = nullptr;
  PyObject* out = nullptr;
};

bool parse_call(const char* name, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                bool takes_mode, Call& call) {
  if (nargs != 1) {
    PyErr_Format(PyExc_TypeError, "%s() takes exactly 1 positional argument (%zd given)", name,
                 nargs);
    return false;
  }
  call.data = args[0];
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    PyObject* value = args[nargs + i];
    if (takes_mode && PyUnicode_CompareWithASCIIString(key, "mode") == 0) {
      call.mode = value;
    } else if (PyUnicode_CompareWithASCIIString(key, "out") == 0) {
      call.out = value;
    } else {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", name, key);
      return false;
    }
  }
  if (call.out == Py_None) call.out = nullptr;
  return true;
}

bool parse_mode(const char* name, PyObject* mode, g711::EncodeMode& result) {
  result = g711::EncodeMode::g191;
  if (mode == nullptr) return true;
  if (PyUnicode_Check(mode)) {
    if (PyUnicode_CompareWithASCIIString(mode, "g191") == 0) return true;
    if (PyUnicode_CompareWithASCIIString(mode, "audioop") == 0) {
      result = g711::EncodeMode::audioop;
      return true;
    }
  }
  PyErr_Format(PyExc_ValueError, "%s: mode must be 'g191' or 'audioop', got %R", name, mode);
  return false;
}

// A buffer format is acceptable if it is raw bytes, or native int16 where PCM16 is expected.
bool format_ok(const char* format, Kind kind) {
  if (format == nullptr) return true;
  std::string_view f(format);
  if (f == "B" || f == "b" || f == "c") return true;
  if (kind != Kind::pcm16) return false;
  if (!f.empty() && (f[0] == '@' || f[0] == '=')) f.remove_prefix(1);
#if PY_BIG_ENDIAN
  if (!f.empty() && f[0] == '>') f.remove_prefix(1);
#else
  if (!f.empty() && f[0] == '<') f.remove_prefix(1);
#endif
  return f == "h";
}

bool is_dtype(const py::array& a, Kind kind) {
  return kind == Kind::pcm16 ? py::isinstance<py::array_t<std::int16_t>>(a)
                             : py::isinstance<py::array_t<std::uint8_t>>(a);
}

// The input: a numpy array of the expected dtype, or any C-contiguous bytes-like object.
class Input {
 public:
  Input() = default;
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;
  ~Input() {
    if (has_view_) PyBuffer_Release(&view_);
  }

  bool acquire(const char* name, PyObject* obj, Kind kind) {
    if (PyBytes_CheckExact(obj)) {  // the common case, without the buffer protocol
      data_ = PyBytes_AS_STRING(obj);
      nbytes_ = PyBytes_GET_SIZE(obj);
    } else if (py::isinstance<py::array>(obj)) {
      array_.emplace(py::reinterpret_borrow<py::array>(obj));
      if (!is_dtype(array(), kind)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a numpy array of dtype %s, got dtype %S",
                     name, expected_dtype(kind), array().dtype().ptr());
        return false;
      }
      if ((array().flags() & py::array::c_style) == 0) {
        PyErr_Format(PyExc_ValueError,
                     "%s: expected a C-contiguous array, got strides %S (use "
                     "numpy.ascontiguousarray)",
                     name, array().attr("strides").ptr());
        return false;
      }
      is_array_ = true;
      data_ = array().data();
      nbytes_ = array().nbytes();
    } else {
      if (PyObject_GetBuffer(obj, &view_, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
          PyErr_Clear();
          PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous buffer, got a %.100s "
                       "that is not", name, Py_TYPE(obj)->tp_name);
        } else {
          PyErr_Clear();
          PyErr_Format(PyExc_TypeError,
                       "%s: expected a bytes-like object or a numpy %s array, got %.100s", name,
                       expected_dtype(kind), Py_TYPE(obj)->tp_name);
        }
        return false;
      }
      has_view_ = true;
      if (!format_ok(view_.format, kind)) {
        PyErr_Format(PyExc_TypeError, "%s: expected %s data, got a buffer of format '%s'", name,
                     kind == Kind::pcm16 ? "bytes or int16 ('h')" : "bytes ('B')",
                     view_.format);
        return false;
      }
      data_ = view_.buf;
      nbytes_ = view_.len;
    }
    if (kind == Kind::pcm16 && nbytes_ % 2 != 0) {
      PyErr_Format(PyExc_ValueError,
                   "%s: PCM16 input must have an even number of bytes, got %zd bytes", name,
                   nbytes_);
      return false;
    }
    return true;
  }

  [[nodiscard]] bool is_array() const { return is_array_; }
  // Only valid when is_array(). Held in an optional because a default-constructed py::array
  // is a real (empty) numpy array, which would cost an allocation on every call.
  [[nodiscard]] const py::array& array() const { return *array_; }
  [[nodiscard]] const void* data() const { return data_; }
  [[nodiscard]] Py_ssize_t nbytes() const { return nbytes_; }

 private:
  const void* data_ = nullptr;
  Py_ssize_t nbytes_ = 0;
  bool is_array_ = false;
  std::optional<py::array> array_;
  Py_buffer view_{};
  bool has_view_ = false;
};

// The result: `out=` when given (checked), else a numpy array shaped like a numpy input,
// else a new bytes object.
class Output {
 public:
  bool prepare(const char* name, PyObject* out, const Input& in, Py_ssize_t count, Kind kind) {
    const Py_ssize_t item = kind == Kind::pcm16 ? 2 : 1;
    if (out != nullptr) {
      if (!py::isinstance<py::array>(out)) {
        PyErr_Format(PyExc_TypeError, "%s: out must be a numpy %s array, got %.100s", name,
                     expected_dtype(kind), Py_TYPE(out)->tp_name);
        return false;
      }
      auto arr = py::reinterpret_borrow<py::array>(out);
      if (!is_dtype(arr, kind)) {
        PyErr_Format(PyExc_TypeError, "%s: out must have dtype %s, got dtype %S", name,
                     expected_dtype(kind), arr.dtype().ptr());
        return false;
      }
      if ((arr.flags() & py::array::c_style) == 0 || !arr.writeable()) {
        PyErr_Format(PyExc_ValueError, "%s: out must be a writeable C-contiguous array", name);
        return false;
      }
      if (arr.size() != count) {
        PyErr_Format(PyExc_ValueError, "%s: out must hold %zd elements, got %zd", name, count,
                     static_cast<Py_ssize_t>(arr.size()));
        return false;
      }
      const auto* o = static_cast<const char*>(arr.data());
      const auto* i = static_cast<const char*>(in.data());
      if (count > 0 && o < i + in.nbytes() && i < o + count * item) {
        PyErr_Format(PyExc_ValueError, "%s: out must not overlap the input", name);
        return false;
      }
      data_ = arr.mutable_data();
      result_ = std::move(arr);
    } else if (in.is_array()) {
      const auto& a = in.array();
      std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
      py::array arr = kind == Kind::pcm16 ? py::array(py::array_t<std::int16_t>(shape))
                                          : py::array(py::array_t<std::uint8_t>(shape));
      data_ = arr.mutable_data();
      result_ = std::move(arr);
    } else {
      PyObject* b = PyBytes_FromStringAndSize(nullptr, count * item);
      if (b == nullptr) return false;
      data_ = PyBytes_AS_STRING(b);
      result_ = py::reinterpret_steal<py::object>(b);
    }
    bytes_ = count * item;
    return true;
  }

  [[nodiscard]] void* data() const { return data_; }
  [[nodiscard]] Py_ssize_t nbytes() const { return bytes_; }
  PyObject* release() { return result_.release().ptr(); }

 private:
  void* data_ = nullptr;
  Py_ssize_t bytes_ = 0;
  py::object result_;
};

template <class F>
void run_maybe_released(Py_ssize_t samples, F&& work) {
  if (samples >= kReleaseGilSamples) {
    py::gil_scoped_release release;
    work();
  } else {
    work();
  }
}

template <class F>
PyObject* guarded(F&& body) noexcept {
  try {
    return body();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_SystemError, "voxwire: unknown C++ exception");
  }
  return nullptr;
}

template <Law law>
PyObject* encode(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs,
                 PyObject* kwnames) noexcept {
  constexpr const char* name = law == Law::ulaw ? "encode_ulaw" : "encode_alaw";
  return guarded([&]() -> PyObject* {
    Call call;
    g711::EncodeMode mode{};
    Input in;
    if (!parse_call(name, args, nargs, kwnames, true, call) ||
        !parse_mode(name, call.mode, mode) || !in.acquire(name, call.data, Kind::pcm16)) {
      return nullptr;
    }
    const Py_ssize_t n = in.nbytes() / 2;
    Output out;
    if (!out.prepare(name, call.out, in, n, Kind::code)) return nullptr;
    const std::span<const std::byte> pcm(static_cast<const std::byte*>(in.data()),
                                         static_cast<std::size_t>(in.nbytes()));
    const std::span<std::uint8_t> codes(static_cast<std::uint8_t*>(out.data()),
                                        static_cast<std::size_t>(n));
    run_maybe_released(n, [&] {
      if constexpr (law == Law::ulaw) {
        g711::encode_ulaw(pcm, codes, mode);
      } else {
        g711::encode_alaw(pcm, codes, mode);
      }
    });
    return out.release();
  });
}

template <Law law>
PyObject* decode(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs,
                 PyObject* kwnames) noexcept {
  constexpr const char* name = law == Law::ulaw ? "decode_ulaw" : "decode_alaw";
  return guarded([&]() -> PyObject* {
    Call call;
    Input in;
    if (!parse_call(name, args, nargs, kwnames, false, call) ||
        !in.acquire(name, call.data, Kind::code)) {
      return nullptr;
    }
    const Py_ssize_t n = in.nbytes();
    Output out;
    if (!out.prepare(name, call.out, in, n, Kind::pcm16)) return nullptr;
    const std::span<const std::uint8_t> codes(static_cast<const std::uint8_t*>(in.data()),
                                              static_cast<std::size_t>(n));
    const std::span<std::byte> pcm(static_cast<std::byte*>(out.data()),
                                   static_cast<std::size_t>(out.nbytes()));
    run_maybe_released(n, [&] {
      if constexpr (law == Law::ulaw) {
        g711::decode_ulaw(codes, pcm);
      } else {
        g711::decode_alaw(codes, pcm);
      }
    });
    return out.release();
  });
}

#define VOXWIRE_ENCODE_DOC(NAME, LAW)                                                          \
  NAME "($module, pcm, /, *, mode='g191', out=None)\n--\n\n"                                 \
  "Encode 16-bit linear PCM to G.711 " LAW ".\n\n"                                            \
  "Parameters\n----------\n"                                                                  \
  "pcm : bytes-like or numpy.ndarray\n"                                                       \
  "    Native-endian 16-bit samples: any C-contiguous bytes-like object of even length\n"     \
  "    (bytes, bytearray, memoryview, array('h')), or a C-contiguous int16 array.\n"          \
  "mode : {'g191', 'audioop'}\n"                                                              \
  "    'g191' (default) is bit-exact with the ITU-T G.191 reference encoder; 'audioop'\n"     \
  "    gives the bytes CPython's audioop returns (they differ on 508 negative inputs for\n"   \
  "    mu-law; A-law is the same in both).\n"                                                 \
  "out : numpy.ndarray of uint8, optional\n"                                                  \
  "    Written in place and returned; must hold one element per sample.\n\n"                 \
  "Returns\n-------\n"                                                                        \
  "bytes or numpy.ndarray\n"                                                                  \
  "    One code per sample: bytes for bytes-like input, a uint8 array shaped like the\n"      \
  "    input for an array, or `out`.\n\n"                                                     \
  "Raises\n------\n"                                                                          \
  "TypeError\n    Wrong dtype or buffer format (never converted silently).\n"                \
  "ValueError\n    Odd byte length, non-contiguous input, bad mode or bad `out`.\n"

#define VOXWIRE_DECODE_DOC(NAME, LAW)                                                          \
  NAME "($module, codes, /, *, out=None)\n--\n\n"                                             \
  "Decode G.711 " LAW " codes to 16-bit linear PCM (ITU-T G.191 expansion).\n\n"              \
  "Parameters\n----------\n"                                                                  \
  "codes : bytes-like or numpy.ndarray\n"                                                     \
  "    One code per byte: any C-contiguous bytes-like object, or a uint8 array.\n"            \
  "out : numpy.ndarray of int16, optional\n"                                                  \
  "    Written in place and returned; must hold one element per code.\n\n"                   \
  "Returns\n-------\n"                                                                        \
  "bytes or numpy.ndarray\n"                                                                  \
  "    Native-endian PCM16: bytes (two per code) for bytes-like input, an int16 array\n"      \
  "    shaped like the input for an array, or `out`.\n\n"                                     \
  "Raises\n------\n"                                                                          \
  "TypeError\n    Wrong dtype or buffer format.\n"                                            \
  "ValueError\n    Non-contiguous input or bad `out`.\n"

template <class F>
PyCFunction as_cfunction(F* f) {
  // METH_FASTCALL | METH_KEYWORDS functions are stored as PyCFunction by CPython's design.
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

PyMethodDef g711_methods[] = {
    {"encode_ulaw", as_cfunction(&encode<Law::ulaw>), METH_FASTCALL | METH_KEYWORDS,
     VOXWIRE_ENCODE_DOC("encode_ulaw", "mu-law")},
    {"encode_alaw", as_cfunction(&encode<Law::alaw>), METH_FASTCALL | METH_KEYWORDS,
     VOXWIRE_ENCODE_DOC("encode_alaw", "A-law")},
    {"decode_ulaw", as_cfunction(&decode<Law::ulaw>), METH_FASTCALL | METH_KEYWORDS,
     VOXWIRE_DECODE_DOC("decode_ulaw", "mu-law")},
    {"decode_alaw", as_cfunction(&decode<Law::alaw>), METH_FASTCALL | METH_KEYWORDS,
     VOXWIRE_DECODE_DOC("decode_alaw", "A-law")},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_g711(py::module_& m) {
  if (PyModule_AddFunctions(m.ptr(), g711_methods) != 0) throw py::error_already_set();

  // Which kernels the bulk functions run on this CPU, for the benchmark's notes.
  m.def(
      "_g711_isa",
      []() -> const char* {
        switch (g711::current_isa()) {
          case g711::Isa::avx512:
            return "avx512";
          case g711::Isa::avx2:
            return "avx2";
          default:
            return "portable";
        }
      },
      "_g711_isa() -> str: the instruction set of the G.711 bulk kernels in use");

  // The same bytes -> bytes mu-law kernels behind a pybind11 dispatch, so the benchmark can
  // put the two entry points side by side. Not part of the public API.
  m.def(
      "_pybind11_encode_ulaw",
      [](const py::bytes& pcm) {
        const Py_ssize_t nbytes = PyBytes_GET_SIZE(pcm.ptr());
        if (nbytes % 2 != 0) throw py::value_error("PCM16 input must have an even byte length");
        auto out = py::reinterpret_steal<py::bytes>(PyBytes_FromStringAndSize(nullptr, nbytes / 2));
        if (!out) throw py::error_already_set();
        g711::encode_ulaw(
            std::span<const std::byte>(reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(pcm.ptr())),
                                       static_cast<std::size_t>(nbytes)),
            std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(out.ptr())),
                                    static_cast<std::size_t>(nbytes / 2)));
        return out;
      },
      py::arg("pcm"), "encode_ulaw(bytes) -> bytes through pybind11 (benchmark twin)");
  m.def(
      "_pybind11_decode_ulaw",
      [](const py::bytes& codes) {
        const Py_ssize_t n = PyBytes_GET_SIZE(codes.ptr());
        auto out = py::reinterpret_steal<py::bytes>(PyBytes_FromStringAndSize(nullptr, 2 * n));
        if (!out) throw py::error_already_set();
        g711::decode_ulaw(
            std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(PyBytes_AS_STRING(codes.ptr())),
                                          static_cast<std::size_t>(n)),
            std::span<std::byte>(reinterpret_cast<std::byte*>(PyBytes_AS_STRING(out.ptr())),
                                 static_cast<std::size_t>(2 * n)));
        return out;
      },
      py::arg("codes"), "decode_ulaw(bytes) -> bytes through pybind11 (benchmark twin)");
}

}  // namespace voxwire::bindings
