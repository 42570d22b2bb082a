#include "rollout_commands.hpp"

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "otad/net/http_client.hpp"
#include "otad/util/strings.hpp"

namespace otad::cli {
namespace {

using json = nlohmann::json;

// The connection flags every `otad rollout` subcommand takes (as push and ls do).
struct Target {
    std::string server;
    std::string token;
    std::string cacert;
    bool insecure = false;
    std::string product;

    void add_to(CLI::App& cmd) {
        cmd.add_option("--server", server, "otad base URL, e.g. https://ota.example.com:8443 (or $OTAD_SERVER)");
        cmd.add_option("--token", token, "operator token (or $OTAD_TOKEN)");
        cmd.add_option("--cacert", cacert, "PEM certificate to trust (e.g. otad-data/tls/cert.pem)");
        cmd.add_flag("--insecure", insecure, "do not verify the server certificate");
        cmd.add_option("--product", product, "product name")->required();
    }
    void resolve() {
        if (server.empty())
            if (const char* s = std::getenv("OTAD_SERVER")) server = s;
        if (token.empty())
            if (const char* t = std::getenv("OTAD_TOKEN")) token = t;
        if (server.empty()) throw CLI::ValidationError("--server", "is required (or set OTAD_SERVER)");
        if (token.empty()) throw CLI::ValidationError("--token", "is required (or set OTAD_TOKEN)");
        while (!server.empty() && server.back() == '/') server.pop_back();
    }
    std::string rollouts_path() const { return "/api/v1/products/" + util::percent_encode(product) + "/rollouts"; }
    net::ClientResponse call(std::string method, std::string path, std::string body = "") const {
        net::ClientRequest req;
        req.method = std::move(method);
        req.url = server + path;
        req.headers.emplace_back("Authorization", "Bearer " + token);
        if (!body.empty()) {
            req.body = std::move(body);
            req.headers.emplace_back("Content-Type", "application/json");
        }
        net::ClientOptions o;
        o.ca_file = cacert;
        o.insecure = insecure;
        return net::http_request(req, o);
    }
};

// "409 Conflict: <detail>" from a problem document, or the raw body.
std::string failure_text(const net::ClientResponse& res) {
    std::string text = std::to_string(res.status);
    try {
        auto doc = json::parse(res.body);
        if (doc.contains("title")) text += " " + doc["title"].get<std::string>();
        if (doc.contains("detail")) text += ": " + doc["detail"].get<std::string>();
        return text;
    } catch (const std::exception&) {
        return text + ": " + res.body.substr(0, 500);
    }
}

std::string number(const json& value) {
    if (value.is_number_integer()) return std::to_string(value.get<std::int64_t>());
    if (value.is_number()) {
        char text[32];
        std::snprintf(text, sizeof text, "%g", value.get<double>());
        return text;
    }
    return value.is_string() ? value.get<std::string>() : "-";
}

std::string ratio(const json& value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", value.is_number() ? value.get<double>() : 0.0);
    return text;
}

// One line per rollout (for the list).
void print_line(const json& r) {
    std::printf("%-5s %-10s %-12s %s -> %s  stage %s/%zu (%s%%)  offered %s\n", number(r["id"]).c_str(),
                r["state"].get<std::string>().c_str(), r["channel"].get<std::string>().c_str(),
                r["base_version"].get<std::string>().c_str(), r["target_version"].get<std::string>().c_str(),
                number(r["current_stage"]).c_str(), r["stages"].size(), number(r["current_percent"]).c_str(),
                number(r["totals"]["offered"]).c_str());
}

// The compact status table.
void print_status(const json& r) {
    std::printf("rollout %s  %s/%s  %s -> %s  %s\n", number(r["id"]).c_str(), r["product"].get<std::string>().c_str(),
                r["channel"].get<std::string>().c_str(), r["base_version"].get<std::string>().c_str(),
                r["target_version"].get<std::string>().c_str(), r["state"].get<std::string>().c_str());
    const json& g = r["gate"];
    std::printf("gate     failure %s (max %s)  rollback %s (max %s)  offered %s, judged from %s%s\n",
                ratio(g["failure_ratio"]).c_str(), number(g["max_failure_ratio"]).c_str(),
                ratio(g["rollback_ratio"]).c_str(), number(g["max_rollback_ratio"]).c_str(),
                number(g["offered"]).c_str(), number(g["min_devices"]).c_str(),
                g["breached"].get<bool>() ? "  BREACHED" : "");
    if (r["pause"].is_object())
        std::printf("paused   by %s at %s\n", r["pause"]["reason"].get<std::string>().c_str(),
                    r["pause"]["at"].is_string() ? r["pause"]["at"].get<std::string>().c_str() : "-");
    std::printf("%-5s %7s %8s %9s %8s %8s %9s %7s %8s %7s  %s\n", "stage", "percent", "hold_s", "eligible", "offered",
                "downl.", "installed", "failed", "rolled", "silent", "state");
    auto row = [](const std::string& stage, const std::string& percent, const std::string& hold, const json& c,
                  const std::string& state) {
        std::printf("%-5s %7s %8s %9s %8s %8s %9s %7s %8s %7s  %s\n", stage.c_str(), percent.c_str(), hold.c_str(),
                    number(c["eligible"]).c_str(), number(c["offered"]).c_str(), number(c["downloading"]).c_str(),
                    number(c["installed"]).c_str(), number(c["failed"]).c_str(), number(c["rolled_back"]).c_str(),
                    number(c["silent"]).c_str(), state.c_str());
    };
    for (const auto& s : r["stages"]) {
        std::string state = s["state"].get<std::string>();
        if (s.contains("hold_ends_at")) state += " until " + s["hold_ends_at"].get<std::string>();
        row(number(s["index"]), number(s["percent"]) + "%", s["hold_s"].is_null() ? "manual" : number(s["hold_s"]),
            s["counters"], state);
    }
    row("total", "", "", r["totals"], "");
}

// "10:3600" -> {"percent":10,"hold_s":3600}; "50" -> {"percent":50}.
json stage_of(const std::string& text) {
    auto colon = text.find(':');
    json stage;
    try {
        std::size_t used = 0;
        std::string percent = text.substr(0, colon);
        double p = std::stod(percent, &used);
        if (used != percent.size()) throw std::invalid_argument(text);
        stage["percent"] =
            (p == static_cast<double>(static_cast<std::int64_t>(p))) ? json(static_cast<std::int64_t>(p)) : json(p);
        if (colon != std::string::npos) {
            std::string hold = text.substr(colon + 1);
            std::int64_t h = std::stoll(hold, &used);
            if (used != hold.size()) throw std::invalid_argument(text);
            stage["hold_s"] = h;
        }
    } catch (const std::exception&) {
        throw CLI::ValidationError("--stage", "expected PERCENT or PERCENT:HOLD_SECONDS, got '" + text + "'");
    }
    return stage;
}

}  // namespace

std::function<int()> add_rollout_commands(CLI::App& app) {
    auto* rollout = app.add_subcommand("rollout", "staged rollouts on a running otad (docs/rollouts.md)");
    rollout->require_subcommand(1);

    struct StartArgs {
        std::string channel, version;
        std::vector<std::string> stages, chips, layouts, versions, tags;
        std::optional<double> max_failure_ratio, max_rollback_ratio;
        std::optional<std::int64_t> min_devices, stale_after_s;
    };
    auto start_target = std::make_shared<Target>();
    auto start = std::make_shared<StartArgs>();
    auto* start_cmd = rollout->add_subcommand("start", "start a rollout of a release on a channel");
    start_target->add_to(*start_cmd);
    start_cmd->add_option("--channel", start->channel, "channel to move")->required();
    start_cmd->add_option("--version", start->version, "target release")->required();
    start_cmd
        ->add_option("--stage", start->stages,
                     "PERCENT[:HOLD_S], cumulative, repeat per stage; without HOLD_S a stage waits for "
                     "`otad rollout advance` (e.g. --stage 1:3600 --stage 10:86400 --stage 100)")
        ->required();
    start_cmd->add_option("--max-failure-ratio", start->max_failure_ratio, "gate: failed+silent / offered");
    start_cmd->add_option("--max-rollback-ratio", start->max_rollback_ratio, "gate: rolled back / offered");
    start_cmd->add_option("--min-devices", start->min_devices, "gate: offered devices before ratios are judged");
    start_cmd->add_option("--stale-after", start->stale_after_s,
                          "gate: seconds until a silent device counts as failing");
    start_cmd->add_option("--chip", start->chips, "only devices of this chip (repeatable)");
    start_cmd->add_option("--layout", start->layouts, "only devices of this layout (repeatable)");
    start_cmd->add_option("--from-version", start->versions, "only devices running this version (repeatable)");
    start_cmd->add_option("--tag", start->tags, "only devices carrying this tag (repeatable: all of them)");

    auto status_target = std::make_shared<Target>();
    auto status_id = std::make_shared<std::int64_t>(0);
    auto status_json = std::make_shared<bool>(false);
    auto* status_cmd = rollout->add_subcommand("status", "show one rollout as a table, or list the product's rollouts");
    status_target->add_to(*status_cmd);
    status_cmd->add_option("ID", *status_id, "rollout id (default: list)");
    status_cmd->add_flag("--json", *status_json, "print the JSON document");

    struct Action {
        std::string name;
        CLI::App* cmd = nullptr;
        std::shared_ptr<Target> target = std::make_shared<Target>();
        std::shared_ptr<std::int64_t> id = std::make_shared<std::int64_t>(0);
        std::shared_ptr<bool> flag = std::make_shared<bool>(false);
    };
    auto actions = std::make_shared<std::vector<Action>>();
    for (auto [name, help, flag_name, flag_help] :
         {std::tuple<const char*, const char*, const char*, const char*>{"pause", "pause a rollout", nullptr, nullptr},
          {"resume", "resume a paused rollout", "--force", "resume although the health gate is breached"},
          {"advance", "move to the next stage now (the last one completes the rollout)", nullptr, nullptr},
          {"abort", "stop the rollout; not-yet-updated devices keep the base", "--revert",
           "offer the base again to devices that took the target (the channel must allow rollback)"}}) {
        Action a;
        a.name = name;
        a.cmd = rollout->add_subcommand(name, help);
        a.target->add_to(*a.cmd);
        a.cmd->add_option("ID", *a.id, "rollout id")->required();
        if (flag_name) a.cmd->add_flag(flag_name, *a.flag, flag_help);
        actions->push_back(std::move(a));
    }

    return [=]() -> int {
        if (start_cmd->parsed()) {
            start_target->resolve();
            json body = {{"channel", start->channel}, {"version", start->version}};
            body["stages"] = json::array();
            for (const auto& s : start->stages) body["stages"].push_back(stage_of(s));
            json gate = json::object();
            if (start->max_failure_ratio) gate["max_failure_ratio"] = *start->max_failure_ratio;
            if (start->max_rollback_ratio) gate["max_rollback_ratio"] = *start->max_rollback_ratio;
            if (start->min_devices) gate["min_devices"] = *start->min_devices;
            if (start->stale_after_s) gate["stale_after_s"] = *start->stale_after_s;
            if (!gate.empty()) body["gate"] = gate;
            json filter = json::object();
            if (!start->chips.empty()) filter["chip"] = start->chips;
            if (!start->layouts.empty()) filter["layout"] = start->layouts;
            if (!start->versions.empty()) filter["version"] = start->versions;
            if (!start->tags.empty()) filter["tags"] = start->tags;
            if (!filter.empty()) body["filter"] = filter;
            auto res = start_target->call("POST", start_target->rollouts_path(), body.dump());
            if (res.status != 201) {
                std::cerr << "otad rollout start: " << failure_text(res) << std::endl;
                return 1;
            }
            print_status(json::parse(res.body));
            return 0;
        }
        if (status_cmd->parsed()) {
            status_target->resolve();
            std::string path = status_target->rollouts_path();
            if (*status_id > 0) path += "/" + std::to_string(*status_id);
            auto res = status_target->call("GET", path);
            if (res.status != 200) {
                std::cerr << "otad rollout status: " << failure_text(res) << std::endl;
                return 1;
            }
            json doc = json::parse(res.body);
            if (*status_json)
                std::cout << doc.dump(2) << std::endl;
            else if (*status_id > 0)
                print_status(doc);
            else if (doc["rollouts"].empty())
                std::cout << "no rollouts" << std::endl;
            else
                for (const auto& r : doc["rollouts"]) print_line(r);
            return 0;
        }
        for (const auto& a : *actions) {
            if (!a.cmd->parsed()) continue;
            a.target->resolve();
            json body = json::object();
            if (a.name == "resume" && *a.flag) body["force"] = true;
            if (a.name == "abort" && *a.flag) body["revert"] = true;
            auto res = a.target->call("POST", a.target->rollouts_path() + "/" + std::to_string(*a.id) + "/" + a.name,
                                      body.dump());
            if (res.status != 200) {
                std::cerr << "otad rollout " << a.name << ": " << failure_text(res) << std::endl;
                return 1;
            }
            print_status(json::parse(res.body));
            return 0;
        }
        return -1;
    };
}

}  // namespace otad::cli
