// The pybind11 module vjepa_fast._C. Importing it runs the static TORCH_LIBRARY registrations of every op;
// the module itself reports how it was built, selects the CPU code path of the EMA op, and holds the
// shared-memory seqlock of the robot processes (Seqlock, robot/shm.py).
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ema/ema.h"

namespace vjepa_fast {
void bind_seqlock(pybind11::module_& m);  // csrc/seqlock/seqlock.cpp
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "vjepa_fast compiled ops (registered under torch.ops.vjepa_fast)";
#ifdef VJEPA_FAST_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("ema_cpu_isa", &vjepa_fast::ema_cpu_isa, "the CPU code path ema_update_ runs: avx512, avx2 or baseline");
  m.def("ema_cpu_isas", &vjepa_fast::ema_cpu_isas, "the CPU code paths of ema_update_ this CPU can run");
  m.def("set_ema_cpu_isa", &vjepa_fast::set_ema_cpu_isa, pybind11::arg("isa"),
        "run ema_update_ on the given CPU code path (ValueError if this CPU cannot)");
  vjepa_fast::bind_seqlock(m);
}
