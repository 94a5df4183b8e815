#include "bindings.hpp"

namespace voxwire::bindings {

std::span<const std::byte> contiguous_bytes(const py::buffer& b, py::buffer_info& keep) {
  keep = b.request();
  if (keep.ndim > 1 || (keep.ndim == 1 && keep.strides[0] != keep.itemsize)) {
    throw py::value_error("expected a C-contiguous bytes-like object");
  }
  return {static_cast<const std::byte*>(keep.ptr),
          static_cast<std::size_t>(keep.size * keep.itemsize)};
}

void raise_reasoned(const char* class_name, std::string_view reason, const std::string& message) {
  const py::object cls = py::module_::import("voxwire.errors").attr(class_name);
  PyErr_SetObject(cls.ptr(), py::make_tuple(py::str(reason.data(), reason.size()), message).ptr());
  throw py::error_already_set();
}

}  // namespace voxwire::bindings

PYBIND11_MODULE(_core, m, pybind11::mod_gil_not_used()) {
  m.doc() = "voxwire's native kernels (private: use the voxwire package)";
  voxwire::bindings::bind_g711(m);
  voxwire::bindings::bind_vad(m);
  voxwire::bindings::bind_rtp(m);
  voxwire::bindings::bind_resample(m);
  voxwire::bindings::bind_plc(m);
  voxwire::bindings::bind_stretch(m);
  voxwire::bindings::bind_opus(m);
  voxwire::bindings::bind_jitter(m);
  voxwire::bindings::bind_media_path(m);
  voxwire::bindings::bind_agc(m);
}
