// Name -> factory maps, so that scenario files name schemes, models, device
// profiles, aggregators and compression stages. Adding a scheme is one class,
// one registration line (FEDSIM_REGISTER in its .cc), one test file.
#pragma once

#include <concepts>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/errors.h"

namespace fedsim {

// For registries whose entries need nothing besides a factory and a summary.
struct NoMeta {};

// `Meta` is what an extension point keeps per entry besides the factory and
// the summary (a compression stage's kind); NoMeta when nothing. Entries are
// added during static initialisation and only read afterwards.
template <class Interface, class Meta, class... Args>
class BasicRegistry {
 public:
  using Factory = std::function<std::unique_ptr<Interface>(Args...)>;
  struct Entry {
    Factory factory;
    std::string summary;  // one line for `fedsim list` and error messages
    [[no_unique_address]] Meta meta;
  };

  static BasicRegistry& instance() {
    static BasicRegistry registry;
    return registry;
  }

  bool add(const std::string& name, Factory factory, std::string summary, Meta meta) {
    entries_[name] = Entry{std::move(factory), std::move(summary), std::move(meta)};
    return true;
  }
  bool add(const std::string& name, Factory factory, std::string summary = "")
    requires std::same_as<Meta, NoMeta>
  {
    return add(name, std::move(factory), std::move(summary), NoMeta{});
  }

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // Null when `name` is unknown; entries never move once added.
  const Entry* find(const std::string& name) const {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }
  // "a, b, c" in name order, for messages about an unknown name.
  std::string known_names() const {
    std::string known;
    for (const auto& [name, entry] : entries_) known += (known.empty() ? "" : ", ") + name;
    return known;
  }

  // Throws InputError listing the known names when `name` is unknown;
  // `where` prefixes the message ("file:line: key").
  std::unique_ptr<Interface> create(const std::string& where, const std::string& name, Args... args) const {
    const Entry* entry = find(name);
    if (!entry) throw InputError(where + ": unknown name '" + name + "', expected one of: " + known_names());
    return entry->factory(std::forward<Args>(args)...);
  }

  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::map<std::string, Entry> entries_;
};

template <class Interface, class... Args>
using Registry = BasicRegistry<Interface, NoMeta, Args...>;

#define FEDSIM_CONCAT_INNER(a, b) a##b
#define FEDSIM_CONCAT(a, b) FEDSIM_CONCAT_INNER(a, b)
// FEDSIM_REGISTER(RegistryType, "name", factory, "summary")
#define FEDSIM_REGISTER(RegistryType, name, factory, summary)                       \
  [[maybe_unused]] static const bool FEDSIM_CONCAT(fedsim_registered_, __LINE__) = \
      RegistryType::instance().add(name, factory, summary)

}  // namespace fedsim
