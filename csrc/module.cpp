// The pybind11 module vjepa_fast._C. Importing it runs the static TORCH_LIBRARY registrations of every op;
// the module itself only reports how it was built.
#include <Python.h>
#include <pybind11/pybind11.h>

PYBIND11_MODULE(_C, m) {
  m.doc() = "vjepa_fast compiled ops (registered under torch.ops.vjepa_fast)";
#ifdef VJEPA_FAST_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
