#include "otad/storage/rollout_repository.hpp"

#include "otad/storage/database.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

using detail::bind_optional;
using detail::bind_text;

constexpr std::string_view rollout_columns =
    "id, product_id, channel, base_release_id, target_release_id, base_version, target_version, state,"
    " current_stage, stage_started_at, paused_at, pause_reason, pause_detail, revert, filter,"
    " max_failure_ratio, max_rollback_ratio, min_devices, stale_after_s,"
    " gate_base_offered, gate_base_failed, gate_base_rolled_back, created_at, created_by, updated_at, finished_at";

constexpr std::string_view stage_columns =
    "idx, percent_bp, hold_s, started_at, eligible, offered, downloading, installed, failed, rolled_back, silent";

constexpr std::string_view member_columns = "rollout_id, device_id, stage, state, offered_at, updated_at";

std::string sql(std::string_view a, std::string_view b = "", std::string_view c = "") {
    std::string out;
    out.reserve(a.size() + b.size() + c.size());
    out.append(a).append(b).append(c);
    return out;
}

Rollout read_rollout(const SQLite::Statement& row) {
    Rollout r;
    r.id = row.getColumn(0).getInt64();
    r.product_id = row.getColumn(1).getInt64();
    r.channel = row.getColumn(2).getString();
    r.base_release_id = detail::optional_int64(row.getColumn(3));
    r.target_release_id = detail::optional_int64(row.getColumn(4));
    r.base_version = row.getColumn(5).getString();
    r.target_version = row.getColumn(6).getString();
    // The schema's CHECK keeps state to the known values.
    r.state = parse_rollout_state(row.getColumn(7).getString()).value_or(RolloutState::paused);
    r.current_stage = row.getColumn(8).getInt();
    r.stage_started_at = row.getColumn(9).getInt64();
    r.paused_at = detail::optional_int64(row.getColumn(10));
    r.pause_reason = row.getColumn(11).getString();
    r.pause_detail_json = row.getColumn(12).getString();
    r.revert = row.getColumn(13).getInt() != 0;
    r.filter_json = row.getColumn(14).getString();
    r.gate.max_failure_ratio = row.getColumn(15).getDouble();
    r.gate.max_rollback_ratio = row.getColumn(16).getDouble();
    r.gate.min_devices = row.getColumn(17).getInt64();
    r.gate.stale_after_s = row.getColumn(18).getInt64();
    r.gate_base_offered = row.getColumn(19).getInt64();
    r.gate_base_failed = row.getColumn(20).getInt64();
    r.gate_base_rolled_back = row.getColumn(21).getInt64();
    r.created_at = row.getColumn(22).getInt64();
    r.created_by = row.getColumn(23).getString();
    r.updated_at = row.getColumn(24).getInt64();
    r.finished_at = detail::optional_int64(row.getColumn(25));
    return r;
}

RolloutCounters read_counters(const SQLite::Statement& row, int first) {
    RolloutCounters c;
    c.eligible = row.getColumn(first).getInt64();
    c.offered = row.getColumn(first + 1).getInt64();
    c.downloading = row.getColumn(first + 2).getInt64();
    c.installed = row.getColumn(first + 3).getInt64();
    c.failed = row.getColumn(first + 4).getInt64();
    c.rolled_back = row.getColumn(first + 5).getInt64();
    c.silent = row.getColumn(first + 6).getInt64();
    return c;
}

RolloutMember read_member(const SQLite::Statement& row) {
    RolloutMember m;
    m.rollout_id = row.getColumn(0).getInt64();
    m.device_id = row.getColumn(1).getString();
    m.stage = row.getColumn(2).getInt();
    m.state = parse_member_state(row.getColumn(3).getString()).value_or(MemberState::eligible);
    m.offered_at = detail::optional_int64(row.getColumn(4));
    m.updated_at = row.getColumn(5).getInt64();
    return m;
}

// What one membership row contributes to its stage's counters.
RolloutCounters contribution(const RolloutMember& m) {
    RolloutCounters c;
    c.eligible = 1;
    c.offered = m.offered_at ? 1 : 0;
    switch (m.state) {
        case MemberState::downloading:
            c.downloading = 1;
            break;
        case MemberState::installed:
            c.installed = 1;
            break;
        case MemberState::failed:
            c.failed = 1;
            break;
        case MemberState::rolled_back:
            c.rolled_back = 1;
            break;
        case MemberState::silent:
            c.silent = 1;
            break;
        case MemberState::eligible:
        case MemberState::offered:
            break;
    }
    return c;
}

// Stages are read in a second query; a rollout without its stages is never handed out.
void load_stages(Connection& connection, Rollout& rollout) {
    auto query =
        connection.prepare(sql("SELECT ", stage_columns, " FROM rollout_stages WHERE rollout_id = ? ORDER BY idx"));
    query->bind(1, rollout.id);
    rollout.stages.clear();
    while (query->executeStep()) {
        RolloutStage s;
        s.index = query->getColumn(0).getInt();
        s.percent_bp = query->getColumn(1).getInt();
        s.hold_s = detail::optional_int64(query->getColumn(2));
        s.started_at = detail::optional_int64(query->getColumn(3));
        s.counters = read_counters(*query, 4);
        rollout.stages.push_back(s);
    }
}

std::vector<Rollout> read_rollouts(Connection& connection, CachedStatement& query) {
    std::vector<Rollout> out;
    while (query->executeStep()) out.push_back(read_rollout(*query));
    for (auto& r : out) load_stages(connection, r);
    return out;
}

}  // namespace

std::string_view to_string(RolloutState state) noexcept {
    switch (state) {
        case RolloutState::running:
            return "running";
        case RolloutState::paused:
            return "paused";
        case RolloutState::completed:
            return "completed";
        case RolloutState::aborted:
            return "aborted";
    }
    return "paused";
}

std::optional<RolloutState> parse_rollout_state(std::string_view text) noexcept {
    for (auto s : {RolloutState::running, RolloutState::paused, RolloutState::completed, RolloutState::aborted})
        if (to_string(s) == text) return s;
    return std::nullopt;
}

std::string_view to_string(MemberState state) noexcept {
    switch (state) {
        case MemberState::eligible:
            return "eligible";
        case MemberState::offered:
            return "offered";
        case MemberState::downloading:
            return "downloading";
        case MemberState::installed:
            return "installed";
        case MemberState::failed:
            return "failed";
        case MemberState::rolled_back:
            return "rolled_back";
        case MemberState::silent:
            return "silent";
    }
    return "eligible";
}

std::optional<MemberState> parse_member_state(std::string_view text) noexcept {
    for (auto s : {MemberState::eligible, MemberState::offered, MemberState::downloading, MemberState::installed,
                   MemberState::failed, MemberState::rolled_back, MemberState::silent})
        if (to_string(s) == text) return s;
    return std::nullopt;
}

std::string_view to_string(OverrideKind kind) noexcept { return kind == OverrideKind::pin ? "pin" : "exclude"; }

RolloutCounters& RolloutCounters::operator+=(const RolloutCounters& o) noexcept {
    eligible += o.eligible;
    offered += o.offered;
    downloading += o.downloading;
    installed += o.installed;
    failed += o.failed;
    rolled_back += o.rolled_back;
    silent += o.silent;
    return *this;
}

RolloutCounters Rollout::totals() const noexcept {
    RolloutCounters sum;
    for (const auto& s : stages) sum += s.counters;
    return sum;
}

// --- rollouts -------------------------------------------------------------

Rollout RolloutRepository::create(const NewRollout& n) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        "INSERT INTO rollouts (product_id, channel, base_release_id, target_release_id, base_version, target_version,"
        " state, current_stage, stage_started_at, filter, max_failure_ratio, max_rollback_ratio, min_devices,"
        " stale_after_s, created_at, created_by, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 'running', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert->bind(1, n.product_id);
    bind_text(*insert, 2, n.channel);
    insert->bind(3, n.base_release_id);
    insert->bind(4, n.target_release_id);
    bind_text(*insert, 5, n.base_version);
    bind_text(*insert, 6, n.target_version);
    insert->bind(7, n.at);
    bind_text(*insert, 8, n.filter_json.empty() ? std::string_view("{}") : std::string_view(n.filter_json));
    insert->bind(9, n.gate.max_failure_ratio);
    insert->bind(10, n.gate.max_rollback_ratio);
    insert->bind(11, n.gate.min_devices);
    insert->bind(12, n.gate.stale_after_s);
    insert->bind(13, n.at);
    bind_text(*insert, 14, n.created_by);
    insert->bind(15, n.at);
    insert->exec();
    const std::int64_t id = connection_.last_insert_rowid();
    auto stage = connection_.prepare(
        "INSERT INTO rollout_stages (rollout_id, idx, percent_bp, hold_s, started_at) VALUES (?, ?, ?, ?, ?)");
    for (std::size_t i = 0; i < n.stages.size(); ++i) {
        stage->bind(1, id);
        stage->bind(2, static_cast<std::int64_t>(i));
        stage->bind(3, n.stages[i].first);
        bind_optional(*stage, 4, n.stages[i].second);
        bind_optional(*stage, 5, i == 0 ? std::optional<std::int64_t>(n.at) : std::nullopt);
        stage->exec();
        stage->reset();
    }
    auto created = get(id);
    scope.commit();
    return std::move(*created);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "create rollout of channel '" + n.channel + "'");
}

std::optional<Rollout> RolloutRepository::get(std::int64_t id) try {
    auto query = connection_.prepare(sql("SELECT ", rollout_columns, " FROM rollouts WHERE id = ?"));
    query->bind(1, id);
    auto found = read_rollouts(connection_, query);
    if (found.empty()) return std::nullopt;
    return std::move(found.front());
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get rollout " + std::to_string(id));
}

std::vector<Rollout> RolloutRepository::list(std::int64_t product_id, std::size_t limit) try {
    auto query = connection_.prepare(
        sql("SELECT ", rollout_columns, " FROM rollouts WHERE product_id = ? ORDER BY id DESC LIMIT ?"));
    query->bind(1, product_id);
    query->bind(2, detail::clamp_limit(limit));
    return read_rollouts(connection_, query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list rollouts of product " + std::to_string(product_id));
}

std::optional<Rollout> RolloutRepository::active_for_channel(std::int64_t product_id, std::string_view channel) try {
    auto query = connection_.prepare(sql("SELECT ", rollout_columns,
                                         " FROM rollouts WHERE product_id = ? AND channel = ?"
                                         " AND state IN ('running', 'paused')"));
    query->bind(1, product_id);
    bind_text(*query, 2, channel);
    auto found = read_rollouts(connection_, query);
    if (found.empty()) return std::nullopt;
    return std::move(found.front());
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find the active rollout of channel '" + std::string(channel) + "'");
}

std::vector<Rollout> RolloutRepository::all_active() try {
    auto query = connection_.prepare(
        sql("SELECT ", rollout_columns, " FROM rollouts WHERE state IN ('running', 'paused') ORDER BY id"));
    return read_rollouts(connection_, query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list active rollouts");
}

std::vector<Rollout> RolloutRepository::for_product(std::int64_t product_id) try {
    auto query = connection_.prepare(
        sql("SELECT ", rollout_columns,
            " FROM rollouts r WHERE product_id = ?1 AND (state IN ('running', 'paused') OR (state = 'aborted'"
            " AND id = (SELECT max(id) FROM rollouts o WHERE o.product_id = ?1 AND o.channel = r.channel)))"
            " ORDER BY id"));
    query->bind(1, product_id);
    return read_rollouts(connection_, query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list rollouts of product " + std::to_string(product_id));
}

std::vector<Rollout> RolloutRepository::active_for_release(std::int64_t release_id) try {
    auto query = connection_.prepare(sql("SELECT ", rollout_columns,
                                         " FROM rollouts WHERE state IN ('running', 'paused')"
                                         " AND (base_release_id = ?1 OR target_release_id = ?1) ORDER BY id"));
    query->bind(1, release_id);
    return read_rollouts(connection_, query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find rollouts of release " + std::to_string(release_id));
}

bool RolloutRepository::pause(std::int64_t id, std::string_view reason, std::string_view detail_json,
                              std::int64_t at) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare(
        "UPDATE rollouts SET state = 'paused', paused_at = ?, pause_reason = ?, pause_detail = ?, updated_at = ?"
        " WHERE id = ? AND state = 'running'");
    update->bind(1, at);
    bind_text(*update, 2, reason);
    bind_text(*update, 3, detail_json.empty() ? std::string_view("{}") : detail_json);
    update->bind(4, at);
    update->bind(5, id);
    const bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "pause rollout " + std::to_string(id));
}

bool RolloutRepository::resume(std::int64_t id, std::int64_t at, const std::optional<RolloutCounters>& baseline) try {
    WriteScope scope(connection_);
    // The hold clock does not run while paused: move the stage start forward by the pause.
    auto update = connection_.prepare(
        "UPDATE rollouts SET state = 'running', stage_started_at = stage_started_at + max(0, ?1 - paused_at),"
        " paused_at = NULL, pause_reason = '', pause_detail = '{}', updated_at = ?1,"
        " gate_base_offered = coalesce(?3, gate_base_offered), gate_base_failed = coalesce(?4, gate_base_failed),"
        " gate_base_rolled_back = coalesce(?5, gate_base_rolled_back)"
        " WHERE id = ?2 AND state = 'paused'");
    update->bind(1, at);
    update->bind(2, id);
    if (baseline) {
        update->bind(3, baseline->offered);
        update->bind(4, baseline->failed + baseline->silent);
        update->bind(5, baseline->rolled_back);
    } else {
        update->bind(3);
        update->bind(4);
        update->bind(5);
    }
    const bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "resume rollout " + std::to_string(id));
}

bool RolloutRepository::advance(std::int64_t id, int from, std::int64_t at) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare(
        "UPDATE rollouts SET current_stage = ?1 + 1, stage_started_at = ?2, updated_at = ?2"
        " WHERE id = ?3 AND state = 'running' AND current_stage = ?1"
        " AND EXISTS (SELECT 1 FROM rollout_stages WHERE rollout_id = ?3 AND idx = ?1 + 1)");
    update->bind(1, from);
    update->bind(2, at);
    update->bind(3, id);
    const bool changed = update->exec() > 0;
    if (changed) {
        auto stage = connection_.prepare("UPDATE rollout_stages SET started_at = ? WHERE rollout_id = ? AND idx = ?");
        stage->bind(1, at);
        stage->bind(2, id);
        stage->bind(3, from + 1);
        stage->exec();
    }
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "advance rollout " + std::to_string(id));
}

bool RolloutRepository::finish(std::int64_t id, RolloutState final_state, bool revert, std::int64_t at) try {
    if (final_state != RolloutState::completed && final_state != RolloutState::aborted)
        throw StorageError(StorageErrorKind::invalid, "a rollout finishes as completed or aborted");
    WriteScope scope(connection_);
    auto update = connection_.prepare(
        "UPDATE rollouts SET state = ?, revert = ?, finished_at = ?, updated_at = ?, paused_at = NULL"
        " WHERE id = ? AND state IN ('running', 'paused')");
    bind_text(*update, 1, to_string(final_state));
    detail::bind_bool(*update, 2, revert);
    update->bind(3, at);
    update->bind(4, at);
    update->bind(5, id);
    const bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "finish rollout " + std::to_string(id));
}

// --- membership -------------------------------------------------------------

std::optional<RolloutMember> RolloutRepository::member(std::int64_t rollout_id, std::string_view device_id) try {
    auto query = connection_.prepare(
        sql("SELECT ", member_columns, " FROM rollout_devices WHERE rollout_id = ? AND device_id = ?"));
    query->bind(1, rollout_id);
    bind_text(*query, 2, device_id);
    if (!query->executeStep()) return std::nullopt;
    return read_member(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "read rollout member '" + std::string(device_id) + "'");
}

void RolloutRepository::put_member(const std::optional<RolloutMember>& before, const RolloutMember& after) try {
    WriteScope scope(connection_);
    auto upsert = connection_.prepare(
        "INSERT INTO rollout_devices (rollout_id, device_id, stage, state, offered_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, device_id) DO UPDATE SET stage = excluded.stage,"
        " state = excluded.state, offered_at = excluded.offered_at, updated_at = excluded.updated_at");
    upsert->bind(1, after.rollout_id);
    bind_text(*upsert, 2, after.device_id);
    upsert->bind(3, after.stage);
    bind_text(*upsert, 4, to_string(after.state));
    bind_optional(*upsert, 5, after.offered_at);
    upsert->bind(6, after.updated_at);
    upsert->exec();

    // One statement moves both stages' counters: minus the old row, plus the new one.
    auto move = connection_.prepare(
        "UPDATE rollout_stages SET eligible = eligible + ?3, offered = offered + ?4, downloading = downloading + ?5,"
        " installed = installed + ?6, failed = failed + ?7, rolled_back = rolled_back + ?8, silent = silent + ?9"
        " WHERE rollout_id = ?1 AND idx = ?2");
    auto apply = [&](int stage, const RolloutCounters& delta) {
        if (delta == RolloutCounters{}) return;
        move->bind(1, after.rollout_id);
        move->bind(2, stage);
        move->bind(3, delta.eligible);
        move->bind(4, delta.offered);
        move->bind(5, delta.downloading);
        move->bind(6, delta.installed);
        move->bind(7, delta.failed);
        move->bind(8, delta.rolled_back);
        move->bind(9, delta.silent);
        if (move->exec() != 1)
            throw StorageError(StorageErrorKind::reference, "rollout " + std::to_string(after.rollout_id) +
                                                                " has no stage " + std::to_string(stage));
        move->reset();
    };
    RolloutCounters plus = contribution(after);
    if (before) {
        RolloutCounters minus = contribution(*before);
        if (before->stage == after.stage) {
            RolloutCounters delta{
                plus.eligible - minus.eligible,   plus.offered - minus.offered, plus.downloading - minus.downloading,
                plus.installed - minus.installed, plus.failed - minus.failed,   plus.rolled_back - minus.rolled_back,
                plus.silent - minus.silent};
            apply(after.stage, delta);
        } else {
            apply(before->stage, RolloutCounters{-minus.eligible, -minus.offered, -minus.downloading, -minus.installed,
                                                 -minus.failed, -minus.rolled_back, -minus.silent});
            apply(after.stage, plus);
        }
    } else {
        apply(after.stage, plus);
    }
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record rollout member '" + after.device_id + "'");
}

std::optional<std::string> RolloutRepository::put_member_or_skip(const std::optional<RolloutMember>& before,
                                                                 const RolloutMember& after) {
    if (!connection_.in_transaction()) {  // nothing to keep going: plain put_member
        put_member(before, after);
        return std::nullopt;
    }
    try {
        connection_.prepare("SAVEPOINT rollout_member")->exec();
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "open a savepoint");
    }
    try {
        put_member(before, after);
    } catch (const StorageError& e) {
        try {
            connection_.prepare("ROLLBACK TO rollout_member")->exec();
            connection_.prepare("RELEASE rollout_member")->exec();
        } catch (const SQLite::Exception& rollback) {
            detail::throw_storage_error(rollback, "roll back to a savepoint");
        }
        return std::string(e.what());
    }
    try {
        connection_.prepare("RELEASE rollout_member")->exec();
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "release a savepoint");
    }
    return std::nullopt;
}

std::vector<RolloutMember> RolloutRepository::stale_members(std::int64_t rollout_id, std::int64_t cutoff,
                                                            std::size_t limit) try {
    auto query = connection_.prepare(
        sql("SELECT ", member_columns,
            " FROM rollout_devices WHERE rollout_id = ? AND state IN ('offered', 'downloading') AND updated_at < ?"
            " LIMIT ?"));
    query->bind(1, rollout_id);
    query->bind(2, cutoff);
    query->bind(3, detail::clamp_limit(limit, 100'000));
    std::vector<RolloutMember> out;
    while (query->executeStep()) out.push_back(read_member(*query));
    return out;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list silent members of rollout " + std::to_string(rollout_id));
}

std::vector<RolloutCounters> RolloutRepository::recount(std::int64_t rollout_id) try {
    auto stages = connection_.prepare("SELECT count(*) FROM rollout_stages WHERE rollout_id = ?");
    stages->bind(1, rollout_id);
    stages->executeStep();
    std::vector<RolloutCounters> out(static_cast<std::size_t>(stages->getColumn(0).getInt64()));
    auto query = connection_.prepare(
        "SELECT stage, count(*), count(offered_at), sum(state = 'downloading'), sum(state = 'installed'),"
        " sum(state = 'failed'), sum(state = 'rolled_back'), sum(state = 'silent')"
        " FROM rollout_devices WHERE rollout_id = ? GROUP BY stage");
    query->bind(1, rollout_id);
    while (query->executeStep()) {
        auto stage = static_cast<std::size_t>(query->getColumn(0).getInt64());
        if (stage >= out.size()) out.resize(stage + 1);
        out[stage] = read_counters(*query, 1);
    }
    return out;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "recount rollout " + std::to_string(rollout_id));
}

// --- tags -----------------------------------------------------------------------

std::vector<std::string> RolloutRepository::tags(std::string_view device_id) try {
    auto query = connection_.prepare("SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag");
    bind_text(*query, 1, device_id);
    std::vector<std::string> out;
    while (query->executeStep()) out.push_back(query->getColumn(0).getString());
    return out;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "read tags of device '" + std::string(device_id) + "'");
}

void RolloutRepository::set_tags(std::string_view device_id, const std::vector<std::string>& tags) try {
    WriteScope scope(connection_);
    auto remove = connection_.prepare("DELETE FROM device_tags WHERE device_id = ?");
    bind_text(*remove, 1, device_id);
    remove->exec();
    auto insert = connection_.prepare("INSERT INTO device_tags (device_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING");
    for (const auto& tag : tags) {
        bind_text(*insert, 1, device_id);
        bind_text(*insert, 2, tag);
        insert->exec();
        insert->reset();
    }
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "set tags of device '" + std::string(device_id) + "'");
}

namespace {
// The selection as bound parameters ?1..?6, NULL = any.
constexpr std::string_view selected_devices =
    "SELECT d.id FROM devices d WHERE d.product_id = ?1 AND (?2 IS NULL OR d.chip = ?2)"
    " AND (?3 IS NULL OR d.layout = ?3) AND (?4 IS NULL OR d.version = ?4) AND (?5 IS NULL OR d.channel = ?5)"
    " AND (?6 IS NULL OR EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = ?6))";

void bind_selection(SQLite::Statement& statement, const DeviceSelection& s) {
    statement.bind(1, s.product_id);
    bind_optional(statement, 2, s.chip);
    bind_optional(statement, 3, s.layout);
    bind_optional(statement, 4, s.version);
    bind_optional(statement, 5, s.channel);
    bind_optional(statement, 6, s.tag);
}
}  // namespace

std::int64_t RolloutRepository::change_tags(const DeviceSelection& selection, const std::vector<std::string>& add,
                                            const std::vector<std::string>& remove) try {
    WriteScope scope(connection_);
    auto count = connection_.prepare(sql("SELECT count(*) FROM (", selected_devices, ")"));
    bind_selection(*count, selection);
    count->executeStep();
    const std::int64_t matched = count->getColumn(0).getInt64();
    // Removals first, so a tag both removed and added ends up present. The
    // selection is evaluated before each statement changes anything it reads.
    auto drop =
        connection_.prepare(sql("DELETE FROM device_tags WHERE tag = ?7 AND device_id IN (", selected_devices, ")"));
    for (const auto& tag : remove) {
        bind_selection(*drop, selection);
        bind_text(*drop, 7, tag);
        drop->exec();
        drop->reset();
    }
    auto insert =
        connection_.prepare(sql("INSERT INTO device_tags (device_id, tag) SELECT id, ?7 FROM (", selected_devices,
                                ") WHERE true"
                                " ON CONFLICT DO NOTHING"));
    for (const auto& tag : add) {
        bind_selection(*insert, selection);
        bind_text(*insert, 7, tag);
        insert->exec();
        insert->reset();
    }
    scope.commit();
    return matched;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "change device tags");
}

std::vector<std::string> RolloutRepository::devices_with_tags(std::int64_t product_id,
                                                              const std::vector<std::string>& tags) try {
    std::vector<std::string> out;
    if (tags.empty()) return out;
    // The first tag narrows through its index; the rest are checked per device.
    auto query = connection_.prepare(
        "SELECT t.device_id FROM device_tags t JOIN devices d ON d.id = t.device_id"
        " WHERE t.tag = ? AND d.product_id = ? ORDER BY t.device_id");
    bind_text(*query, 1, tags.front());
    query->bind(2, product_id);
    while (query->executeStep()) out.push_back(query->getColumn(0).getString());
    if (tags.size() == 1) return out;
    auto has = connection_.prepare("SELECT 1 FROM device_tags WHERE device_id = ? AND tag = ?");
    std::vector<std::string> all;
    for (auto& id : out) {
        bool every = true;
        for (std::size_t i = 1; i < tags.size() && every; ++i) {
            bind_text(*has, 1, id);
            bind_text(*has, 2, tags[i]);
            every = has->executeStep();
            has->reset();
        }
        if (every) all.push_back(std::move(id));
    }
    return all;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list tagged devices");
}

// --- overrides --------------------------------------------------------------------

void RolloutRepository::set_override(const DeviceOverride& o) try {
    WriteScope scope(connection_);
    auto upsert = connection_.prepare(
        "INSERT INTO device_overrides (device_id, product_id, kind, release_id, reason, created_at, created_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET product_id = excluded.product_id,"
        " kind = excluded.kind, release_id = excluded.release_id, reason = excluded.reason,"
        " created_at = excluded.created_at, created_by = excluded.created_by");
    bind_text(*upsert, 1, o.device_id);
    upsert->bind(2, o.product_id);
    bind_text(*upsert, 3, to_string(o.kind));
    bind_optional(*upsert, 4, o.release_id);
    bind_text(*upsert, 5, o.reason);
    upsert->bind(6, o.created_at);
    bind_text(*upsert, 7, o.created_by);
    upsert->exec();
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "set override of device '" + o.device_id + "'");
}

bool RolloutRepository::clear_override(std::string_view device_id) try {
    WriteScope scope(connection_);
    auto remove = connection_.prepare("DELETE FROM device_overrides WHERE device_id = ?");
    bind_text(*remove, 1, device_id);
    const bool changed = remove->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "clear override of device '" + std::string(device_id) + "'");
}

namespace {
constexpr std::string_view override_select =
    "SELECT o.device_id, o.product_id, o.kind, o.release_id, coalesce(r.version, ''), o.reason, o.created_at,"
    " o.created_by FROM device_overrides o LEFT JOIN releases r ON r.id = o.release_id";

DeviceOverride read_override(const SQLite::Statement& row) {
    DeviceOverride o;
    o.device_id = row.getColumn(0).getString();
    o.product_id = row.getColumn(1).getInt64();
    o.kind = row.getColumn(2).getString() == "pin" ? OverrideKind::pin : OverrideKind::exclude;
    o.release_id = detail::optional_int64(row.getColumn(3));
    o.version = row.getColumn(4).getString();
    o.reason = row.getColumn(5).getString();
    o.created_at = row.getColumn(6).getInt64();
    o.created_by = row.getColumn(7).getString();
    return o;
}
}  // namespace

std::optional<DeviceOverride> RolloutRepository::get_override(std::string_view device_id) try {
    auto query = connection_.prepare(sql(override_select, " WHERE o.device_id = ?"));
    bind_text(*query, 1, device_id);
    if (!query->executeStep()) return std::nullopt;
    return read_override(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "read override of device '" + std::string(device_id) + "'");
}

std::vector<DeviceOverride> RolloutRepository::overrides(std::int64_t product_id) try {
    auto query = connection_.prepare(sql(override_select, " WHERE o.product_id = ? ORDER BY o.device_id"));
    query->bind(1, product_id);
    std::vector<DeviceOverride> out;
    while (query->executeStep()) out.push_back(read_override(*query));
    return out;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list overrides of product " + std::to_string(product_id));
}

std::int64_t RolloutRepository::pins_to_release(std::int64_t release_id) try {
    auto query = connection_.prepare("SELECT count(*) FROM device_overrides WHERE release_id = ?");
    query->bind(1, release_id);
    query->executeStep();
    return query->getColumn(0).getInt64();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "count pins to release " + std::to_string(release_id));
}

}  // namespace otad::storage
