// vjepa_fast._C.Seqlock: the Python face of seqlock.h, over a writable buffer (a SharedMemory's .buf).
//
// Every call is a few hundred nanoseconds and creates no Python object beyond its return value (True/False,
// None, or a float/int for the inspection calls): the 1 kHz loop calls try_read_into and the writes every
// cycle. Buffers are taken with the raw buffer protocol (PyObject_GetBuffer), not pybind11's buffer_info,
// which builds shape/stride vectors on every call.
#include "seqlock/seqlock.h"

#include <Python.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace py = pybind11;

namespace vjepa_fast {
namespace {

// A Py_buffer held for the length of one call.
class BufferView {
 public:
  BufferView(py::handle obj, bool writable, const char* what) {
    const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      throw py::type_error(std::string(what) + " must be a C-contiguous" + (writable ? " writable" : "") +
                           " buffer (a numpy array or memoryview), got " +
                           std::string(Py_TYPE(obj.ptr())->tp_name));
    }
  }
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  unsigned char* data() const { return static_cast<unsigned char*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

class Seqlock {
 public:
  // buffer: the whole shared block (header + data); nbytes: the data's size; float64: whether `put` may be used.
  Seqlock(py::handle buffer, size_t nbytes, bool float64) : nbytes_(nbytes), float64_(float64) {
    if (PyObject_GetBuffer(buffer.ptr(), &view_, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0) {
      PyErr_Clear();
      throw py::type_error("Seqlock: buffer must be a writable C-contiguous buffer (SharedMemory.buf)");
    }
    open_ = true;
    const size_t need = seqlock::kHeaderBytes + nbytes;
    if (static_cast<size_t>(view_.len) < need) {
      release();
      throw py::value_error("Seqlock: buffer holds " + std::to_string(view_.len) + " bytes, the header and data need " +
                            std::to_string(need));
    }
    if (reinterpret_cast<uintptr_t>(view_.buf) % 8 != 0) {
      release();
      throw py::value_error("Seqlock: buffer must be 8-byte aligned (shared memory is page aligned)");
    }
    block_ = static_cast<unsigned char*>(view_.buf);
  }
  ~Seqlock() { release(); }
  Seqlock(const Seqlock&) = delete;
  Seqlock& operator=(const Seqlock&) = delete;

  void begin_write() { seqlock::begin_write(block()); }

  void end_write() {
    if (!seqlock::end_write(block(), seqlock::monotonic_seconds())) {
      throw py::value_error("Seqlock.end_write: no write in progress (call begin_write first)");
    }
  }

  void write(py::handle src) {
    BufferView v(src, false, "Seqlock.write: values");
    check_size(v.size(), "Seqlock.write: values");
    unsigned char* b = block();
    seqlock::begin_write(b);
    seqlock::store_relaxed(b + seqlock::kHeaderBytes, v.data(), nbytes_);
    seqlock::end_write(b, seqlock::monotonic_seconds());
  }

  // float64 blocks: data[offset : offset + len(values)] = values (a list or tuple of numbers), inside a write.
  void put(Py_ssize_t offset, py::handle values) {
    if (!float64_) {
      throw py::type_error("Seqlock.put: only float64 blocks take sequences of numbers");
    }
    unsigned char* b = block();
    if (!(seqlock::sequence(b) & 1)) {
      throw py::value_error("Seqlock.put: outside a write (call begin_write first)");
    }
    PyObject* seq = PySequence_Fast(values.ptr(), "Seqlock.put: values must be a list or tuple of numbers");
    if (seq == nullptr) {
      throw py::error_already_set();
    }
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const Py_ssize_t slots = static_cast<Py_ssize_t>(nbytes_ / 8);
    if (offset < 0 || offset + n > slots) {
      Py_DECREF(seq);
      throw py::index_error("Seqlock.put: " + std::to_string(n) + " values at offset " + std::to_string(offset) +
                            " do not fit in " + std::to_string(slots) + " slots");
    }
    PyObject** items = PySequence_Fast_ITEMS(seq);
    auto* words = reinterpret_cast<uint64_t*>(b + seqlock::kHeaderBytes) + offset;
    for (Py_ssize_t i = 0; i < n; ++i) {
      const double d = PyFloat_AsDouble(items[i]);
      if (d == -1.0 && PyErr_Occurred()) {
        Py_DECREF(seq);
        throw py::error_already_set();
      }
      uint64_t bits;
      std::memcpy(&bits, &d, 8);
      std::atomic_ref<uint64_t>(words[i]).store(bits, std::memory_order_relaxed);
    }
    Py_DECREF(seq);
  }

  bool try_read_into(py::handle out) {
    BufferView v(out, true, "Seqlock.try_read_into: out");
    check_size(v.size(), "Seqlock.try_read_into: out");
    return seqlock::try_read(block(), v.data(), nbytes_, &last_read_);
  }

  uint64_t sequence() { return seqlock::sequence(block()); }
  double stamp() { return seqlock::stamp(block()); }
  uint64_t last_read_sequence() const { return last_read_; }
  size_t nbytes() const { return nbytes_; }
  bool closed() const { return !open_; }

  // Lets the SharedMemory close: no call works after this.
  void release() {
    if (open_) {
      PyBuffer_Release(&view_);
      open_ = false;
      block_ = nullptr;
    }
  }

 private:
  unsigned char* block() const {
    if (block_ == nullptr) {
      throw py::value_error("Seqlock: the block was closed");
    }
    return block_;
  }
  void check_size(size_t got, const char* what) const {
    if (got != nbytes_) {
      throw py::value_error(std::string(what) + " has " + std::to_string(got) + " bytes, the block holds " +
                            std::to_string(nbytes_));
    }
  }

  Py_buffer view_{};
  bool open_ = false;
  unsigned char* block_ = nullptr;
  size_t nbytes_;
  bool float64_;
  uint64_t last_read_ = 0;
};

}  // namespace

void bind_seqlock(py::module_& m) {
  py::class_<Seqlock>(m, "Seqlock",
                      "Single-writer seqlock over a shared buffer (uint64 sequence, float64 stamp, data); C++ "
                      "acquire/release atomics, so correct on any CPU. robot/shm.py wraps it (SeqlockArray).")
      .def(py::init<py::handle, size_t, bool>(), py::arg("buffer"), py::arg("nbytes"), py::arg("float64") = false)
      .def("begin_write", &Seqlock::begin_write, "marks a write in progress (sequence odd)")
      .def("end_write", &Seqlock::end_write, "stamps CLOCK_MONOTONIC and publishes the write (sequence even)")
      .def("write", &Seqlock::write, py::arg("values"), "one whole write of nbytes from a contiguous buffer")
      .def("put", &Seqlock::put, py::arg("offset"), py::arg("values"),
           "float64 blocks, inside begin_write/end_write: data[offset:offset + len(values)] = values (list/tuple)")
      .def("try_read_into", &Seqlock::try_read_into, py::arg("out"),
           "one attempt that never waits: True with a consistent copy in out, False while a write is in progress "
           "or overlapped the copy (out then holds a mix)")
      .def_property_readonly("sequence", &Seqlock::sequence, "the current sequence (odd while a write is in progress)")
      .def_property_readonly("stamp", &Seqlock::stamp, "CLOCK_MONOTONIC seconds of the last completed write")
      .def_property_readonly("last_read_sequence", &Seqlock::last_read_sequence,
                             "the sequence the last successful try_read_into belongs to")
      .def_property_readonly("nbytes", &Seqlock::nbytes)
      .def_property_readonly("closed", &Seqlock::closed)
      .def("release", &Seqlock::release, "releases the buffer (the SharedMemory can then close)");
}

}  // namespace vjepa_fast
