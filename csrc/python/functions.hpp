// The functions of fastpad._core, one per module.def. Each is defined in the file that binds the
// core header of the same name (csrc/python/X.cpp binds csrc/X.hpp):
//   pack.cpp          measure, pack, checked_cells    fastpad.pad and the front ends built on it
//   ragged.cpp        pack_ragged                     fastpad.Packer(ragged_transfer=...)
//   plan.cpp          concat_rows, plan_batches       fastpad.flatten / windows / plan_batches
//   buffer_cache.cpp  cached_empty, set_cache_limit, clear_cache, cache_stats (the output cache)
//   patch.cpp         exact_int_lists                 fastpad.patch_transformers (no core part)
// csrc/bindings.cpp, the one place that defines the Python-facing module, registers them; the
// Python signatures pybind11 derives from these declarations are what fastpad/_core.pyi mirrors.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace fastpad::python {

namespace py = pybind11;

// measure(fields, padding, max_length, truncate, multiple_of) -> (lengths, width)
py::tuple measure(const py::list& specs, int padding, const py::int_& max_length_arg, bool truncate,
                  const py::int_& multiple_of_arg);

// pack(fields, outputs, pad_values, lengths, mask, width, keep_limit, pad_left, truncate_left,
//      threads)
void pack(const py::list& specs, const py::list& outputs, const py::sequence& pad_value_list,
          const py::array_t<std::int64_t, 0>& lengths_array, const py::object& mask,
          std::int64_t width, const py::int_& keep_limit_arg, bool pad_left, bool truncate_left,
          int threads);

// checked_cells(rows, width, itemsize) -> rows * width
std::int64_t checked_cells(std::int64_t rows, std::int64_t width, int itemsize);

// pack_ragged(fields, outputs, pad_values, lengths, meta, width, keep_limit, pad_left,
//             truncate_left) -> flat size
std::int64_t pack_ragged(const py::list& specs, const py::list& outputs,
                         const py::sequence& pad_value_list,
                         const py::array_t<std::int64_t, 0>& lengths_array, const py::object& meta,
                         std::int64_t width, const py::int_& keep_limit_arg, bool pad_left,
                         bool truncate_left);

// concat_rows(name, rows, out)
void concat_rows(const std::string& name, const py::object& rows, const py::object& out);

// plan_batches(lengths, max_tokens, max_batch_size, multiple_of, sort, shuffle, seed)
//   -> (order, bounds)
py::tuple plan_batches(const py::object& lengths_object, std::int64_t max_tokens,
                       std::int64_t max_batch_size, std::int64_t multiple_of, bool sort,
                       bool shuffle, std::uint64_t seed);

// exact_int_lists(rows) -> bool
bool exact_int_lists(const py::object& rows);

// cached_empty(rows, width, dtype) -> numpy array; set_cache_limit(limit); clear_cache();
// cache_stats() -> dict
py::object cached_empty(py::ssize_t rows, py::ssize_t width, const py::dtype& dtype);
void set_cache_limit(std::size_t limit);
void clear_cache();
py::dict cache_stats();

}  // namespace fastpad::python
