// Name -> factory maps, so that scenario files name schemes, models, device
// profiles and aggregators. Adding a scheme is one class, one registration
// line (FEDSIM_REGISTER in its .cc), one test file.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/base/errors.h"

namespace fedsim {

template <class Interface, class... Args>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Interface>(Args...)>;
  struct Entry {
    Factory factory;
    std::string summary;  // one line for `fedsim list` and error messages
  };

  static Registry& instance() {
    static Registry registry;
    return registry;
  }

  bool add(const std::string& name, Factory factory, std::string summary = "") {
    entries_[name] = Entry{std::move(factory), std::move(summary)};
    return true;
  }

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  // Throws InputError listing the known names when `name` is unknown;
  // `where` prefixes the message ("file:line: key").
  std::unique_ptr<Interface> create(const std::string& where, const std::string& name, Args... args) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string known;
      for (const auto& [n, e] : entries_) known += (known.empty() ? "" : ", ") + n;
      throw InputError(where + ": unknown name '" + name + "', expected one of: " + known);
    }
    return it->second.factory(std::forward<Args>(args)...);
  }

  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::map<std::string, Entry> entries_;
};

#define FEDSIM_CONCAT_INNER(a, b) a##b
#define FEDSIM_CONCAT(a, b) FEDSIM_CONCAT_INNER(a, b)
// FEDSIM_REGISTER(RegistryType, "name", factory, "summary")
#define FEDSIM_REGISTER(RegistryType, name, factory, summary)                       \
  [[maybe_unused]] static const bool FEDSIM_CONCAT(fedsim_registered_, __LINE__) = \
      RegistryType::instance().add(name, factory, summary)

}  // namespace fedsim
