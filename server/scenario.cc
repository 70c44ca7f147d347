#include "server/scenario.h"

#include <fstream>
#include <sstream>
#include <thread>

#include "core/data/data_source.h"
#include "core/base/errors.h"
#include "core/models/model.h"
#include "server/aggregator.h"

namespace fedsim {

namespace {
void check_fedvote_consistency(const Scenario& s, const Config& root);

constexpr std::int64_t kMaxInt = std::numeric_limits<std::int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Checks that a registry knows the name under `key` (so typos fail at load).
template <class RegistryT>
std::string registered_name(const Config& c, const std::string& key, const std::string& fallback) {
  const std::string name = c.get_string(key, fallback);
  if (!RegistryT::instance().contains(name))
    c.fail(key, "one of: " + RegistryT::instance().known_names(), "'" + name + "'");
  return name;
}

}  // namespace

Scenario parse_scenario(const std::string& yaml_text, const std::string& file,
                        const std::vector<std::string>& overrides) {
  Config root = Config::parse_string(yaml_text, file);
  for (const auto& o : overrides) Config::apply_override(root.node(), o);

  Scenario s;
  s.file = file;
  s.root = root;
  s.name = root.get_string("name", "scenario");
  s.seed = static_cast<std::uint64_t>(root.get_int("seed", 1, 0, kMaxInt));

  s.data = root.child("data");
  registered_name<DataSourceRegistry>(s.data, "source", "fashion_mnist");
  s.partition = root.child("partition");
  registered_name<PartitionerRegistry>(s.partition, "scheme", "iid");
  s.model = root.child("model");
  registered_name<ModelRegistry>(s.model, "name", "softmax_regression");

  const Config algorithm = root.child("algorithm");
  s.algorithm = algorithm.get_choice("name", "fedpaq", {"fedpaq", "fedvote"});
  s.fedvote_k = algorithm.get_double("k", 1.5, 1e-3, 100.0);

  s.aggregator = root.child("aggregator");
  registered_name<AggregatorRegistry>(s.aggregator, "name", s.algorithm == "fedvote" ? "vote" : "mean");
  s.weight_by_samples = s.aggregator.get_bool("weight_by_samples", true);

  s.num_clients = static_cast<std::size_t>(root.get_int("clients", 1, 10'000'000));
  s.clients_per_round = static_cast<std::size_t>(root.get_int("clients_per_round", 1, 10'000'000));
  if (s.clients_per_round > s.num_clients)
    root.fail("clients_per_round", "at most clients (" + std::to_string(s.num_clients) + ")",
              "'" + std::to_string(s.clients_per_round) + "'");
  s.rounds = static_cast<std::size_t>(root.get_int("rounds", 1, 100'000'000));
  s.eval_every = static_cast<std::size_t>(root.get_int("eval_every", 1, 1, kMaxInt));
  s.threads = static_cast<std::size_t>(root.get_int("threads", 0, 0, 1024));

  s.training.local_steps = static_cast<std::size_t>(root.get_int("local_steps", 1, 1, 1'000'000));
  s.training.batch_size = static_cast<std::size_t>(root.get_int("batch_size", 32, 0, 1'000'000));
  s.training.learning_rate = root.get_double("learning_rate", 0.05, 0.0, 1e6);
  s.training.weight_decay = root.get_double("weight_decay", 0.0, 0.0, 1e6);
  s.server_learning_rate = root.get_double("server_learning_rate", 1.0, 0.0, 1e6);

  s.uplink = PipelineSpec::parse(root, "uplink");
  s.downlink = PipelineSpec::parse(root, "downlink");
  check_fedvote_consistency(s, root);

  const Config server = root.child("server");
  const std::string policy =
      server.get_choice("policy", "wait_all", {"wait_all", "deadline", "over_selection", "async"});
  s.policy.deadline_s = server.get_double("deadline_s", 0.0, 0.0, kInf);
  s.policy.over_selection = server.get_double("over_selection", 1.0, 1.0, 100.0);
  s.policy.buffer_size = static_cast<std::size_t>(server.get_int("buffer_size", 10, 1, 10'000'000));
  s.policy.concurrency = static_cast<std::size_t>(server.get_int("concurrency", 0, 0, 10'000'000));
  s.policy.staleness_exponent = server.get_double("staleness_exponent", 0.5, 0.0, 10.0);
  if (policy == "wait_all") s.policy.kind = RoundPolicy::kWaitAll;
  if (policy == "deadline") {
    s.policy.kind = RoundPolicy::kDeadline;
    if (s.policy.deadline_s <= 0.0) server.fail("deadline_s", "a deadline > 0 seconds for policy 'deadline'", "nothing");
  }
  if (policy == "over_selection") {
    s.policy.kind = RoundPolicy::kOverSelection;
    if (s.policy.over_selection <= 1.0)
      server.fail("over_selection", "a factor > 1 for policy 'over_selection'", "'" + std::to_string(s.policy.over_selection) + "'");
  }
  if (policy == "async") {
    s.policy.kind = RoundPolicy::kAsync;
    if (s.policy.concurrency == 0) s.policy.concurrency = s.clients_per_round;
    if (s.policy.concurrency > s.num_clients)
      server.fail("concurrency", "at most clients (" + std::to_string(s.num_clients) + ")",
                  "'" + std::to_string(s.policy.concurrency) + "'");
  }

  const Config output = root.child("output");
  s.output_dir = output.get_string("dir", "");
  s.progress = output.get_bool("progress", true);

  return s;
}

namespace {

// FedVote is one algorithm spread over three components (the clients' latent
// model, their vote quantizer, the server's vote): they must agree on k, and
// votes make no sense for FedPAQ's model differences (nor differences for a vote).
void check_fedvote_consistency(const Scenario& s, const Config& root) {
  const std::string q = s.uplink.quantizer_name();
  const bool vote_quantizer = q.rfind("fedvote_", 0) == 0;
  const std::string aggregator = s.aggregator.get_string("name", "mean");
  if (s.algorithm != "fedvote") {
    if (vote_quantizer)
      root.fail("uplink", "a quantizer of model differences (" + q + " needs algorithm: {name: fedvote})", "'" + q + "'");
    if (aggregator == "vote")
      s.aggregator.fail("name", "an aggregator of model differences ('vote' needs algorithm: {name: fedvote})", "'vote'");
    return;
  }
  if (!vote_quantizer && !root.has("uplink"))
    root.child("algorithm").fail("name", "an uplink with a fedvote_binary or fedvote_ternary quantizer for 'fedvote'",
                                 "no uplink: list (float32)");
  if (!vote_quantizer)
    root.fail("uplink", "a fedvote_binary or fedvote_ternary quantizer (algorithm fedvote sends votes)", "'" + q + "'");
  const auto same_k = [&](const Config& c, const std::string& owner) {
    const double k = c.get_double("k", 1.5, 1e-3, 1e3);
    if (k != s.fedvote_k) {
      std::ostringstream found;
      found << k << (c.has("k") ? "" : " (the default)");
      c.fail("k", "the same k as algorithm.k (" + std::to_string(s.fedvote_k) + ") for " + owner, found.str());
    }
  };
  same_k(*s.uplink.quantizer_settings(), "the clients' " + q);
  if (aggregator == "vote") same_k(s.aggregator, "the server's vote");
}

}  // namespace

Scenario load_scenario(const std::string& file, const std::vector<std::string>& overrides) {
  std::ifstream in(file);
  if (!in) throw InputError(file + ": cannot open scenario file (does it exist?)");
  std::stringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), file, overrides);
}

}  // namespace fedsim
