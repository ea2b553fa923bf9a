// RE2's util/logging.h without iostreams, for the armv6 build
// (scripts/re2-armv6.sh copies it over the source's own before compiling).
//
// RE2's LogMessage collects a message in an std::ostringstream, which links
// std::locale and every facet into a static binary, about 400 kB on ARMv6
// (issue 14; pisecd itself uses no iostreams, see text::cat in
// include/pisec/util.hpp). This one collects it in an std::string: the same
// messages, the same single fwrite to stderr, the same abort() for FATAL.
// The macros are RE2's (2022-06-01), unchanged.
// RE2 is Copyright 2009 The RE2 Authors (BSD-3-Clause).

#ifndef UTIL_LOGGING_H_
#define UTIL_LOGGING_H_

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string>

#include "util/util.h"
#include "re2/stringpiece.h"

#define DCHECK(condition) assert(condition)
#define DCHECK_EQ(val1, val2) assert((val1) == (val2))
#define DCHECK_NE(val1, val2) assert((val1) != (val2))
#define DCHECK_LE(val1, val2) assert((val1) <= (val2))
#define DCHECK_LT(val1, val2) assert((val1) < (val2))
#define DCHECK_GE(val1, val2) assert((val1) >= (val2))
#define DCHECK_GT(val1, val2) assert((val1) > (val2))

#define CHECK(x)	if(x){}else LogMessageFatal(__FILE__, __LINE__).stream() << "Check failed: " #x
#define CHECK_LT(x, y)	CHECK((x) < (y))
#define CHECK_GT(x, y)	CHECK((x) > (y))
#define CHECK_LE(x, y)	CHECK((x) <= (y))
#define CHECK_GE(x, y)	CHECK((x) >= (y))
#define CHECK_EQ(x, y)	CHECK((x) == (y))
#define CHECK_NE(x, y)	CHECK((x) != (y))

#define LOG_INFO LogMessage(__FILE__, __LINE__)
#define LOG_WARNING LogMessage(__FILE__, __LINE__)
#define LOG_ERROR LogMessage(__FILE__, __LINE__)
#define LOG_FATAL LogMessageFatal(__FILE__, __LINE__)
#define LOG_QFATAL LOG_FATAL

#ifdef NDEBUG
#define LOG_DFATAL LOG_ERROR
#else
#define LOG_DFATAL LOG_FATAL
#endif

#define LOG(severity) LOG_ ## severity.stream()

#define VLOG(x) if((x)>0){}else LOG_INFO.stream()

// What RE2 writes into a log line: text, characters, numbers (its enums
// convert to int) and pointers.
class LogText {
 public:
  LogText& operator<<(const char* s) { text_ += s; return *this; }
  LogText& operator<<(const std::string& s) { text_ += s; return *this; }
  LogText& operator<<(const re2::StringPiece& s) { text_.append(s.data(), s.size()); return *this; }
  LogText& operator<<(char c) { text_ += c; return *this; }
  LogText& operator<<(int v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(long v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(long long v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(unsigned v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(unsigned long v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(unsigned long long v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(double v) { text_ += std::to_string(v); return *this; }
  LogText& operator<<(const void* p) {
    char buf[24];
    snprintf(buf, sizeof buf, "%p", p);
    text_ += buf;
    return *this;
  }
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

class LogMessage {
 public:
  LogMessage(const char* file, int line)
      : flushed_(false) {
    stream() << file << ":" << line << ": ";
  }
  void Flush() {
    stream() << "\n";
    const std::string& s = str_.str();
    size_t n = s.size();
    if (fwrite(s.data(), 1, n, stderr) < n) {}  // shut up gcc
    flushed_ = true;
  }
  ~LogMessage() {
    if (!flushed_) {
      Flush();
    }
  }
  LogText& stream() { return str_; }

 private:
  bool flushed_;
  LogText str_;

  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
};

class LogMessageFatal : public LogMessage {
 public:
  LogMessageFatal(const char* file, int line)
      : LogMessage(file, line) {}
  ATTRIBUTE_NORETURN ~LogMessageFatal() {
    Flush();
    abort();
  }
 private:
  LogMessageFatal(const LogMessageFatal&) = delete;
  LogMessageFatal& operator=(const LogMessageFatal&) = delete;
};

#endif  // UTIL_LOGGING_H_
