// Error messages built from strings and integers without iostreams.
//
// std::ostringstream needs the C++ locale machinery (std::locale::classic() and its num_put
// facet) to be initialised in whatever libstdc++ the extension ends up using. An extension built
// with GCC 13 that carries part of libstdc++ statically (manylinux devtoolsets link the newer
// symbols from libstdc++_nonshared.a; some CUDA images set -static-libstdc++) can find that
// machinery uninitialised: the first `message << row` then crashes the interpreter, and it did on
// an H100 machine (GCC 13.3, Python 3.12). std::to_string and std::string need no locale, so
// every message goes through this class instead. It keeps the stream's `<<` / `.str()` shape.
#pragma once

#include <string>
#include <type_traits>

namespace fastpad {

class Message {
 public:
  Message& operator<<(const std::string& text) {
    text_ += text;
    return *this;
  }
  Message& operator<<(const char* text) {
    text_ += text;
    return *this;
  }
  Message& operator<<(char character) {
    text_ += character;
    return *this;
  }
  // Integers of every width and sign (bool excluded: it would print as 0/1, never wanted here).
  template <typename Integer,
            typename = std::enable_if_t<std::is_integral_v<Integer> &&
                                        !std::is_same_v<Integer, bool> &&
                                        !std::is_same_v<Integer, char>>>
  Message& operator<<(Integer value) {
    text_ += std::to_string(value);
    return *this;
  }
  const std::string& str() const noexcept { return text_; }

 private:
  std::string text_;
};

}  // namespace fastpad
