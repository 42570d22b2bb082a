#include "otad/cli/commands.hpp"

#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app.hpp"
#include "remote_commands.hpp"
#include "rollout_commands.hpp"
#include "keys_commands.hpp"
#include "serve.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/error.hpp"
#include "otad/storage/migrations.hpp"
#include "otad/storage/token_repository.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"
#include "otad/version.hpp"

namespace otad::cli {
namespace {

std::string when(std::optional<std::int64_t> t) { return t ? util::rfc3339(*t) : "-"; }

int token_create(DataDirFlags& flags, const std::string& name, const std::string& role_text) {
    auto role = storage::parse_token_role(role_text);
    if (!role) throw CLI::ValidationError("--role", "must be admin, uploader or viewer, got '" + role_text + "'");
    DataDir d = open_data_dir(flags.load());
    auto created = d.database->write([&](storage::Connection& c) {
        auto t = storage::TokenRepository(c).create(name, *role);
        storage::AuditRepository(c).append("cli", "token.create", "token/" + name,
                                           nlohmann::json{{"role", role_text}}.dump());
        return t;
    });
    std::cerr << "created " << role_text << " token '" << name << "'; it is shown once, store it now:\n";
    std::cout << created.secret << std::endl;
    return 0;
}

int token_list(DataDirFlags& flags, bool as_json) {
    DataDir d = open_data_dir(flags.load());
    auto tokens = d.database->read([](storage::Connection& c) { return storage::TokenRepository(c).list(true); });
    if (as_json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& t : tokens)
            out.push_back({{"name", t.name},
                           {"role", storage::to_string(t.role)},
                           {"created_at", when(t.created_at)},
                           {"last_used_at", when(t.last_used_at)},
                           {"revoked_at", when(t.revoked_at)}});
        std::cout << out.dump(2) << std::endl;
        return 0;
    }
    std::printf("%-24s %-9s %-21s %-21s %s\n", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED");
    for (const auto& t : tokens)
        std::printf("%-24s %-9s %-21s %-21s %s\n", t.name.c_str(), std::string(storage::to_string(t.role)).c_str(),
                    when(t.created_at).c_str(), when(t.last_used_at).c_str(), when(t.revoked_at).c_str());
    return 0;
}

int token_revoke(DataDirFlags& flags, const std::string& name, bool force) {
    DataDir d = open_data_dir(flags.load());
    bool revoked = d.database->write([&](storage::Connection& c) {
        storage::TokenRepository tokens(c);
        auto t = tokens.find_active_by_name(name);
        if (!t) return false;
        if (t->role == storage::TokenRole::admin && tokens.count_admins() == 1 && !force)
            throw std::runtime_error("'" + name +
                                     "' is the last active admin token; create another first or pass --force");
        tokens.revoke(name);
        storage::AuditRepository(c).append("cli", "token.revoke", "token/" + name, "{}");
        return true;
    });
    if (!revoked) {
        std::cerr << "otad: no active token named '" << name << "'\n";
        return 1;
    }
    std::cerr << "revoked token '" << name << "'\n";
    return 0;
}

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{"otad: over-the-air firmware update server"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "show help for every subcommand");

    // serve
    DataDirFlags serve_flags;
    std::string listen, http_listen;
    auto* serve_cmd = app.add_subcommand("serve", "serve HTTPS (and optional plain HTTP) until SIGTERM/SIGINT");
    serve_flags.add_to(*serve_cmd);
    serve_cmd->add_option("--listen", listen, "HTTPS listener host:port (default 127.0.0.1:8443)");
    serve_cmd->add_option("--http-listen", http_listen,
                          "plain-HTTP listener host:port for legacy devices (default off)");

    // migrate
    DataDirFlags migrate_flags;
    auto* migrate_cmd = app.add_subcommand("migrate", "apply pending database migrations and exit");
    migrate_flags.add_to(*migrate_cmd);

    // token
    auto* token_cmd = app.add_subcommand("token", "manage operator API tokens");
    token_cmd->require_subcommand(1);
    DataDirFlags token_flags;
    std::string token_name, token_role;
    bool token_json = false, token_force = false;
    auto* token_create_cmd = token_cmd->add_subcommand("create", "create a token and print it once");
    token_flags.add_to(*token_create_cmd);
    token_create_cmd->add_option("--name", token_name, "unique token name")->required();
    token_create_cmd->add_option("--role", token_role, "admin|uploader|viewer")->required();
    auto* token_list_cmd = token_cmd->add_subcommand("list", "list tokens (never their secrets)");
    token_flags.add_to(*token_list_cmd);
    token_list_cmd->add_flag("--json", token_json, "print JSON");
    auto* token_revoke_cmd = token_cmd->add_subcommand("revoke", "revoke a token by name");
    token_flags.add_to(*token_revoke_cmd);
    token_revoke_cmd->add_option("--name", token_name, "token name")->required();
    token_revoke_cmd->add_flag("--force", token_force, "allow revoking the last admin token");

    // push, ls, healthcheck
    auto run_remote = add_remote_commands(app);
    // keys (manifest signing keys)
    auto run_keys = add_keys_commands(app);
    // rollout start|status|pause|resume|advance|abort
    auto run_rollout = add_rollout_commands(app);

    // version
    auto* version_cmd = app.add_subcommand("version", "print the version and the schema version it knows");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    try {
        if (serve_cmd->parsed()) {
            if (!listen.empty()) serve_flags.source.overrides["listen"] = listen;
            if (!http_listen.empty()) serve_flags.source.overrides["http_listen"] = http_listen;
            return serve(serve_flags.load());
        }
        if (migrate_cmd->parsed()) {
            DataDir d = open_data_dir(migrate_flags.load());
            std::cout << "schema version " << d.schema_before << " -> " << d.schema_now << " ("
                      << d.config.database_path().string() << ")" << std::endl;
            return 0;
        }
        if (token_create_cmd->parsed()) return token_create(token_flags, token_name, token_role);
        if (token_list_cmd->parsed()) return token_list(token_flags, token_json);
        if (token_revoke_cmd->parsed()) return token_revoke(token_flags, token_name, token_force);
        if (int code = run_remote(); code >= 0) return code;
        if (int code = run_keys(); code >= 0) return code;
        if (int code = run_rollout(); code >= 0) return code;
        if (version_cmd->parsed()) {
            std::cout << "otad " << kVersion << " (schema " << storage::latest_known_version() << ")" << std::endl;
            return 0;
        }
    } catch (const config::ConfigError& e) {
        std::cerr << "otad: configuration error: " << e.what() << std::endl;
        return 2;
    } catch (const CLI::ValidationError& e) {
        std::cerr << "otad: " << e.what() << std::endl;
        return 2;
    } catch (const storage::MigrationError& e) {
        std::cerr << "otad: database migration failed: " << e.what() << std::endl;
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "otad: " << e.what() << std::endl;
        return 1;
    }
    return 2;
}

}  // namespace otad::cli
