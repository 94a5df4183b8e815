#pragma once
// The one include point for pybind11 in voxwire._core. Each kernel has a bind_<kernel>.cpp
// that registers its functions and types on the module; module.cpp calls them in order.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace voxwire::bindings {

namespace py = pybind11;

/// The bytes of a C-contiguous bytes-like object (any item format), without copying. `keep`
/// holds the buffer export and must outlive the span. Raises ValueError if not contiguous.
std::span<const std::byte> contiguous_bytes(const py::buffer& b, py::buffer_info& keep);

/// Raises voxwire.errors.<class_name>(reason, message): the errors that name the rule an
/// input broke (RtpError, OpusPacketError).
[[noreturn]] void raise_reasoned(const char* class_name, std::string_view reason,
                                 const std::string& message);

void bind_g711(py::module_& m);
void bind_vad(py::module_& m);
void bind_rtp(py::module_& m);
void bind_resample(py::module_& m);
void bind_plc(py::module_& m);
void bind_stretch(py::module_& m);
void bind_opus(py::module_& m);
void bind_jitter(py::module_& m);
void bind_media_path(py::module_& m);
void bind_agc(py::module_& m);

}  // namespace voxwire::bindings
