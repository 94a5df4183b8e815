#include "bindings.hpp"

PYBIND11_MODULE(_core, m, pybind11::mod_gil_not_used()) {
  m.doc() = "voxwire's native kernels (private: use the voxwire package)";
  voxwire::bindings::bind_g711(m);
  voxwire::bindings::bind_rtp(m);
  voxwire::bindings::bind_resample(m);
}
