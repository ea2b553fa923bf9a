// pisecd elfcheck FILE...: one line per file, exit 1 if any does not run.

#include "pisec/cli.hpp"
#include "pisec/formats.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

int cmd_elfcheck(const Args& in) {
  Args args = in;
  std::string target_text = take_option(args, {"-t", "--target"}).value_or("armv6");
  auto target = elf::parse_target(target_text);
  if (!target) throw UsageError("--target must be armv6 or host, got \"" + target_text + "\"");
  reject_unknown_options(args);
  if (!args.empty() && args.front() == "--") args.erase(args.begin());
  if (args.empty()) throw UsageError("no FILE given");
  int rc = 0;
  for (const auto& file : args) {
    elf::Verdict v = elf::check_file(file, *target);
    text::out(text::cat(file, ": ", elf::describe(v, *target), '\n'));
    if (v.status != elf::Status::runs) rc = 1;
  }
  return rc;
}

}  // namespace pisec::cli
