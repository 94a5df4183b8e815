#pragma once
// The one include point for pybind11 in voxwire._core. Each kernel has a bind_<kernel>.cpp
// that registers its functions and types on the module; module.cpp calls them in order.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace voxwire::bindings {

namespace py = pybind11;

void bind_g711(py::module_& m);
void bind_rtp(py::module_& m);
void bind_resample(py::module_& m);

}  // namespace voxwire::bindings
