// The Python-facing module fastpad._core: the one place that defines it, every function it holds
// and the translation of the core's errors into Python exceptions.
//
// The functions are thin wrappers in csrc/python/ (functions.hpp says which file holds which).
// Holding the GIL they measure and validate the inputs (Python lists of ints, 1-D integer
// buffers, flat values + offsets; csrc/python/convert.hpp) and unbox Python ints straight into
// the caller's output buffers; work over buffers alone (ragged sources, array rows, masks) runs in
// the plain C++ core (csrc/*.hpp) with the GIL released. fastpad::Error and the checks there become
// ValueError / TypeError / OverflowError / MemoryError naming the field and the row.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <exception>

#include "pack.hpp"
#include "parallel.hpp"
#include "python/functions.hpp"

namespace py = pybind11;
namespace bind = fastpad::python;
using fastpad::Error;
using fastpad::ErrorKind;

PYBIND11_MODULE(_core, module) {
  module.doc() = "fastpad C++ core: ragged integer rows into padded buffers";

  py::register_exception_translator([](std::exception_ptr pointer) {
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const Error& error) {
      PyObject* type = PyExc_ValueError;
      switch (error.kind()) {
        case ErrorKind::Type: type = PyExc_TypeError; break;
        case ErrorKind::Overflow: type = PyExc_OverflowError; break;
        case ErrorKind::Memory: type = PyExc_MemoryError; break;
        case ErrorKind::Value: break;
      }
      PyErr_SetString(type, error.what());
    }
  });

  module.def("measure", &bind::measure, py::arg("fields"), py::arg("padding"),
             py::arg("max_length"), py::arg("truncate"), py::arg("multiple_of"),
             "Row lengths of a batch (fields must agree row by row) and the padded width.");
  module.def("pack", &bind::pack, py::arg("fields"), py::arg("outputs"), py::arg("pad_values"),
             py::arg("lengths"), py::arg("mask"), py::arg("width"), py::arg("keep_limit"),
             py::arg("pad_left"), py::arg("truncate_left"), py::arg("threads") = 1,
             "Write every field and the attention mask into the given [rows, width] buffers.");
  module.def("checked_cells", &bind::checked_cells, py::arg("rows"), py::arg("width"),
             py::arg("itemsize"),
             "rows * width, or MemoryError when a buffer of that many cells cannot exist.");
  module.def("hardware_threads", &fastpad::hardware_threads,
             "Number of hardware threads (0 when unknown).");

  // Beyond padding (issue 5).
  module.def("concat_rows", &bind::concat_rows, py::arg("name"), py::arg("rows"), py::arg("out"),
             "Write the rows of a list field back to back into a 1-D int64 array of their total "
             "length.");
  module.def("plan_batches", &bind::plan_batches, py::arg("lengths"), py::arg("max_tokens"),
             py::arg("max_batch_size"), py::arg("multiple_of"), py::arg("sort"), py::arg("shuffle"),
             py::arg("seed"),
             "Token-budget batches: (order, bounds); batch b is order[bounds[b]:bounds[b + 1]].");

  // Ragged transfer (issue 15).
  module.def("pack_ragged", &bind::pack_ragged, py::arg("fields"), py::arg("outputs"),
             py::arg("pad_values"), py::arg("lengths"), py::arg("meta"), py::arg("width"),
             py::arg("keep_limit"), py::arg("pad_left"), py::arg("truncate_left"),
             "Write each row's kept tokens and one pad cell into flat 1-D outputs, and the per-row "
             "layout (base, bound) into meta; returns the flat size.");

  // fastpad.patch_transformers (issue 10).
  module.def("exact_int_lists", &bind::exact_int_lists, py::arg("rows"),
             "Whether rows (a list or tuple) holds only exact lists of exact Python ints.");

  // Output memory that stays warm between calls (issue 12).
  module.def("cached_empty", &bind::cached_empty, py::arg("rows"), py::arg("width"),
             py::arg("dtype"),
             "Uninitialized [rows, width] array in a cached block, given back when the last array, "
             "view or tensor using it dies.");
  module.def("set_cache_limit", &bind::set_cache_limit, py::arg("limit"),
             "Most idle bytes the output cache keeps (0: none); frees idle blocks beyond it.");
  module.def("clear_cache", &bind::clear_cache, "Free every idle block of the output cache.");
  module.def("cache_stats", &bind::cache_stats,
             "Counters of the output cache: limit, idle/live bytes and blocks, hits, misses, "
             "evictions.");
}
