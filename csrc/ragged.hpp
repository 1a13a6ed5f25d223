// fastpad core: the host-side layout of a ragged transfer (fastpad.Packer(ragged_transfer=...)).
//
// Plain C++17 with no Python headers (like pack.hpp). Only the real tokens of a batch cross PCIe:
// every row's kept tokens plus one pad cell, row after row, in a flat buffer of
// sum(kept) + rows cells. With right padding row r is [tokens..., pad] starting at p_r, with left
// padding [pad, tokens...]. The device rebuilds the [rows, width] tensors from two numbers per row,
// base[r] and bound[r] (bound is the row's pad cell), with no host synchronization:
//
//   t = base[r] + column
//   right: index = min(t, bound[r]), mask = t < bound[r]
//   left:  index = max(t, bound[r]), mask = t > bound[r]
//   value = flat[index]            (a padding cell reads the row's pad cell)
#pragma once

#include <cstdint>

#include "pack.hpp"

namespace fastpad {

// For rows [0, rows) of `lengths` (input lengths; a row keeps place(geometry, length).count
// tokens, taken from the head or the tail as geometry says), fills token_start[r] (flat index of
// the row's first kept token), bound[r] (its pad cell) and base[r] (see above). Returns the flat
// size. Raises Error(Value) for a negative length or a kept row wider than geometry.width (row
// named).
std::int64_t ragged_layout(const std::int64_t* lengths, std::int64_t rows, const Geometry& geometry,
                           std::int64_t* token_start, std::int64_t* base, std::int64_t* bound);

}  // namespace fastpad
