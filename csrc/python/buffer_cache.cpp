// Bindings of the output cache (buffer_cache.hpp, issue 12): numpy arrays whose memory is a cached
// block, given back to the cache by the array's base object when the last array, view or tensor
// sharing it dies.
//
// Python.h (through convert.hpp) comes before any standard header, as the C API asks.
#include "python/convert.hpp"
#include "python/functions.hpp"

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "buffer_cache.hpp"

namespace fastpad::python {
namespace {

constexpr const char* kBlockCapsuleName = "fastpad.block";
// tracemalloc domain of the blocks handed out: numpy's (NPY_TRACE_DOMAIN), so cached outputs are
// traced like the np.empty arrays they replace (a no-op while tracemalloc is not tracing).
constexpr unsigned int kTraceDomain = 389047;

// PyTraceMalloc_Track / _Untrack, looked up at run time: before 3.13, Include/tracemalloc.h
// declares them without extern "C", so C++ code cannot link them by name. Null where not found
// (then blocks are simply not traced).
struct TraceMalloc {
  using Track = int (*)(unsigned int, std::uintptr_t, std::size_t);
  using Untrack = int (*)(unsigned int, std::uintptr_t);
  Track track = nullptr;
  Untrack untrack = nullptr;
};

const TraceMalloc& trace_malloc() {
  static const TraceMalloc functions = [] {
    TraceMalloc found;
#if !defined(_WIN32)
    auto track = reinterpret_cast<TraceMalloc::Track>(dlsym(RTLD_DEFAULT, "PyTraceMalloc_Track"));
    auto untrack =
        reinterpret_cast<TraceMalloc::Untrack>(dlsym(RTLD_DEFAULT, "PyTraceMalloc_Untrack"));
    if (track != nullptr && untrack != nullptr) {
      found.track = track;
      found.untrack = untrack;
    }
#endif
    return found;
  }();
  return functions;
}

// Destructor of the capsule that owns a cached block: runs when the last array, view or tensor
// sharing the block has died (numpy keeps the capsule as the arrays' base; torch.from_numpy keeps
// the array), so the block is never reused while anything can still reach it.
void release_block_capsule(PyObject* capsule) {
  void* block = PyCapsule_GetPointer(capsule, kBlockCapsuleName);
  const auto capacity = reinterpret_cast<std::uintptr_t>(PyCapsule_GetContext(capsule));
  if (block == nullptr) {  // cannot happen (the name is ours); never raise from a destructor
    PyErr_Clear();
    return;
  }
  if (trace_malloc().untrack != nullptr) {
    trace_malloc().untrack(kTraceDomain, reinterpret_cast<std::uintptr_t>(block));
  }
  BufferCache::global().release(block, static_cast<std::size_t>(capacity));
}

}  // namespace

// An uninitialized, writable, C-contiguous [rows, width] array of `dtype` in a cached block; its
// base is the capsule that gives the block back.
py::object cached_empty(py::ssize_t rows, py::ssize_t width, const py::dtype& dtype) {
  const auto itemsize = static_cast<py::ssize_t>(dtype.itemsize());
  if (rows < 0 || width < 0 || itemsize <= 0) {
    fail(ErrorKind::Value, "fastpad: bad output shape or dtype");
  }
  const py::ssize_t limit = std::numeric_limits<py::ssize_t>::max() / 2;
  if (width != 0 && (rows > limit / width || rows * width > limit / itemsize)) {
    fail(ErrorKind::Memory, "fastpad: a [" + std::to_string(rows) + ", " + std::to_string(width) +
                                "] output does not fit in memory");
  }
  std::size_t capacity = 0;
  const auto bytes = static_cast<std::size_t>(rows * width * itemsize);
  void* block = BufferCache::global().acquire(bytes, &capacity);
  PyObject* capsule = PyCapsule_New(block, kBlockCapsuleName, release_block_capsule);
  if (capsule == nullptr) {
    BufferCache::global().release(block, capacity);
    throw py::error_already_set();
  }
  // The capacity rides in the capsule's context; set before anything can drop the capsule.
  PyCapsule_SetContext(capsule, reinterpret_cast<void*>(static_cast<std::uintptr_t>(capacity)));
  py::object owner = py::reinterpret_steal<py::object>(capsule);
  if (trace_malloc().track != nullptr) {
    trace_malloc().track(kTraceDomain, reinterpret_cast<std::uintptr_t>(block), bytes);
  }
  auto& api = py::detail::npy_api::get();
  Py_intptr_t shape[2] = {rows, width};
  // PyArray_NewFromDescr steals the descriptor reference, PyArray_SetBaseObject the base's (both
  // also on failure).
  PyObject* array =
      api.PyArray_NewFromDescr_(api.PyArray_Type_, dtype.inc_ref().ptr(), 2, shape, nullptr, block,
                                py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr);
  if (array == nullptr) throw py::error_already_set();
  py::object result = py::reinterpret_steal<py::object>(array);
  if (api.PyArray_SetBaseObject_(array, owner.release().ptr()) != 0) throw py::error_already_set();
  return result;
}

void set_cache_limit(std::size_t limit) { BufferCache::global().set_limit(limit); }

void clear_cache() { BufferCache::global().clear(); }

py::dict cache_stats() {
  const BufferCacheStats stats = BufferCache::global().stats();
  py::dict result;
  result["limit"] = stats.limit;
  result["idle_bytes"] = stats.idle_bytes;
  result["idle_blocks"] = stats.idle_blocks;
  result["live_bytes"] = stats.live_bytes;
  result["live_blocks"] = stats.live_blocks;
  result["hits"] = stats.hits;
  result["misses"] = stats.misses;
  result["evictions"] = stats.evictions;
  return result;
}

}  // namespace fastpad::python
