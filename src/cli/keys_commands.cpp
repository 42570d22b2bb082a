#include "keys_commands.hpp"

#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "app.hpp"
#include "otad/domain/signing.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::cli {
namespace {

struct KeysCommands {
    DataDirFlags flags;
    std::string algorithm;
    std::string key_id;
    bool json = false;
    bool force = false;
    CLI::App* create = nullptr;
    CLI::App* list = nullptr;
    CLI::App* retire = nullptr;
};

domain::SignatureAlgorithm preferred_algorithm(const config::Config& c) {
    return domain::parse_signature_algorithm(c.signing_algorithm).value_or(domain::SignatureAlgorithm::es256);
}

std::string when(std::optional<std::int64_t> t) { return t ? util::rfc3339(*t) : "-"; }

nlohmann::json to_json(const domain::PublicKeyInfo& k) {
    return {{"key_id", k.key_id},
            {"alg", domain::to_string(k.algorithm)},
            {"status", k.active() ? "active" : "retired"},
            {"signing", k.signing},
            {"created_at", when(k.created_at)},
            {"retired_at", when(k.retired_at)},
            {"public_key_pem", k.public_pem}};
}

int run_create(KeysCommands& k) {
    config::Config c = k.flags.load();
    auto alg_text = k.algorithm.empty() ? c.signing_algorithm : k.algorithm;
    auto alg = domain::parse_signature_algorithm(alg_text);
    if (!alg) throw CLI::ValidationError("--algorithm", "must be es256 or ed25519, got '" + alg_text + "'");
    DataDir d = open_data_dir(c);
    domain::SigningKeyRing ring(*d.database, preferred_algorithm(d.config));
    auto created = ring.create(*alg, "cli");
    if (created.retired_key_id)
        std::cerr << "retired the previous " << domain::to_string(*alg) << " key '" << *created.retired_key_id
                  << "' (one active key per algorithm)\n";
    if (k.json) {
        nlohmann::json out = to_json(created.key);
        out["retired_key_id"] =
            created.retired_key_id ? nlohmann::json(*created.retired_key_id) : nlohmann::json(nullptr);
        std::cout << out.dump(2) << std::endl;
        return 0;
    }
    std::cerr << "created " << domain::to_string(*alg) << " signing key " << created.key.key_id
              << "; its public key (also at GET /api/v1/keys):\n";
    std::cout << created.key.key_id << "\n" << created.key.public_pem << std::flush;
    return 0;
}

int run_list(KeysCommands& k) {
    DataDir d = open_data_dir(k.flags.load());
    domain::SigningKeyRing ring(*d.database, preferred_algorithm(d.config));
    auto keys = ring.list();
    if (k.json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& key : keys) out.push_back(to_json(key));
        std::cout << out.dump(2) << std::endl;
        return 0;
    }
    std::printf("%-18s %-8s %-8s %-8s %-21s %s\n", "KEY ID", "ALG", "STATUS", "SIGNING", "CREATED", "RETIRED");
    for (const auto& key : keys)
        std::printf("%-18s %-8s %-8s %-8s %-21s %s\n", key.key_id.c_str(),
                    std::string(domain::to_string(key.algorithm)).c_str(), key.active() ? "active" : "retired",
                    key.signing ? "yes" : "-", when(key.created_at).c_str(), when(key.retired_at).c_str());
    return 0;
}

int run_retire(KeysCommands& k) {
    DataDir d = open_data_dir(k.flags.load());
    domain::SigningKeyRing ring(*d.database, preferred_algorithm(d.config));
    try {
        ring.retire(k.key_id, "cli", k.force);
    } catch (const domain::SigningKeyError& e) {
        std::cerr << "otad: " << e.what() << std::endl;
        return 1;
    }
    std::cerr << "retired signing key '" << k.key_id << "'\n";
    for (const auto& key : ring.list())
        if (key.signing) std::cerr << "manifests are now signed by " << key.key_id << "\n";
    return 0;
}

}  // namespace

std::function<int()> add_keys_commands(CLI::App& app) {
    auto k = std::make_shared<KeysCommands>();
    auto* keys = app.add_subcommand("keys", "manage manifest signing keys (offline, on the data dir)");
    keys->require_subcommand(1);
    k->create = keys->add_subcommand("create", "create a signing key (rotates out the active key of its algorithm)");
    k->flags.add_to(*k->create);
    k->create->add_option("--algorithm", k->algorithm, "es256 (default: config signing_algorithm) or ed25519");
    k->create->add_flag("--json", k->json, "print JSON");
    k->list = keys->add_subcommand("list", "list signing keys (public parts only)");
    k->flags.add_to(*k->list);
    k->list->add_flag("--json", k->json, "print JSON (with public keys)");
    k->retire = keys->add_subcommand("retire", "retire a signing key (it stays listed for verification)");
    k->flags.add_to(*k->retire);
    k->retire->add_option("--key-id", k->key_id, "the key to retire")->required();
    k->retire->add_flag("--force", k->force, "allow retiring the last active key");
    return [k]() -> int {
        if (k->create->parsed()) return run_create(*k);
        if (k->list->parsed()) return run_list(*k);
        if (k->retire->parsed()) return run_retire(*k);
        return -1;
    };
}

}  // namespace otad::cli
