#include "otad/domain/signing_keys.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "otad/domain/change_watch.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/signing_key_repository.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

storage::SigningAlgorithm to_storage(SignatureAlgorithm alg) noexcept {
    return alg == SignatureAlgorithm::ed25519 ? storage::SigningAlgorithm::ed25519 : storage::SigningAlgorithm::es256;
}

SignatureAlgorithm from_storage(storage::SigningAlgorithm alg) noexcept {
    return alg == storage::SigningAlgorithm::ed25519 ? SignatureAlgorithm::ed25519 : SignatureAlgorithm::es256;
}

PublicKeyInfo public_info(const storage::SigningKey& row) {
    return PublicKeyInfo{row.key_id, from_storage(row.algorithm), row.public_key_pem, row.created_at, row.retired_at,
                         false};
}

}  // namespace

SigningKeyRing::SigningKeyRing(storage::Database& database, SignatureAlgorithm preferred, ChangeWatch* watch)
    : database_(database), preferred_(preferred), watch_(watch) {}

CreatedSigningKey SigningKeyRing::create(SignatureAlgorithm algorithm, std::string_view actor) {
    const SigningKey key = SigningKey::generate(algorithm);
    storage::SigningKey row;
    row.key_id = key.key_id();
    row.algorithm = to_storage(algorithm);
    row.private_key_pem = key.private_pem();
    row.public_key_pem = key.public_pem();
    row.created_at = util::unix_now();

    CreatedSigningKey created;
    database_.write([&](storage::Connection& c) {
        storage::SigningKeyRepository keys(c);
        if (auto previous = keys.active(row.algorithm)) {
            keys.retire(previous->key_id);
            created.retired_key_id = previous->key_id;
        }
        keys.insert(row);
        nlohmann::json detail = {{"key_id", row.key_id}, {"algorithm", to_string(algorithm)}};
        if (created.retired_key_id) detail["retired_key_id"] = *created.retired_key_id;
        storage::AuditRepository(c).append(actor, "signing_key.create", "signing_key/" + row.key_id, detail.dump());
    });
    invalidate();
    created.key = public_info(row);
    util::log_event(*util::logger("keys"), spdlog::level::info, "signing_key_created",
                    {{"key_id", row.key_id},
                     {"algorithm", std::string(to_string(algorithm))},
                     {"rotated_out", created.retired_key_id.value_or("-")}});
    return created;
}

PublicKeyInfo SigningKeyRing::retire(std::string_view key_id, std::string_view actor, bool allow_none) {
    auto retired = database_.write([&](storage::Connection& c) {
        storage::SigningKeyRepository keys(c);
        auto found = keys.get(key_id);
        if (!found || found->retired_at)
            throw SigningKeyError(SigningKeyError::Kind::not_found,
                                  "no active signing key with key_id '" + std::string(key_id) + "'");
        auto all = keys.list();
        auto active = std::count_if(all.begin(), all.end(), [](const auto& k) { return !k.retired_at; });
        if (active <= 1 && !allow_none)
            throw SigningKeyError(SigningKeyError::Kind::refused,
                                  "'" + std::string(key_id) +
                                      "' is the last active signing key: create another first (or force it; "
                                      "manifests cannot be signed without an active key)");
        keys.retire(key_id);
        storage::AuditRepository(c).append(actor, "signing_key.retire", "signing_key/" + std::string(key_id),
                                           nlohmann::json{{"key_id", key_id}}.dump());
        return keys.get(key_id).value();
    });
    invalidate();
    util::log_event(*util::logger("keys"), spdlog::level::info, "signing_key_retired", {{"key_id", retired.key_id}});
    return public_info(retired);
}

std::optional<PublicKeyInfo> SigningKeyRing::ensure_active_key(std::string_view actor) {
    auto ring = current();
    if (std::any_of(ring->keys.begin(), ring->keys.end(), [](const auto& k) { return k.active(); }))
        return std::nullopt;
    return create(preferred_, actor).key;
}

std::vector<PublicKeyInfo> SigningKeyRing::list() { return current()->keys; }

std::shared_ptr<const SigningKey> SigningKeyRing::signer() { return current()->signer; }

void SigningKeyRing::invalidate() {
    if (watch_) watch_->touch();
    std::lock_guard lock(mutex_);
    ring_.reset();
}

std::shared_ptr<const SigningKeyRing::Ring> SigningKeyRing::current() {
    const std::int64_t generation = watch_ ? watch_->generation() : 0;
    {
        std::lock_guard lock(mutex_);
        if (ring_ && ring_->generation == generation) return ring_;
    }
    auto fresh = load(generation);
    std::lock_guard lock(mutex_);
    if (!ring_ || ring_->generation <= generation) ring_ = fresh;
    return fresh;
}

std::shared_ptr<const SigningKeyRing::Ring> SigningKeyRing::load(std::int64_t generation) {
    auto rows = database_.read([](storage::Connection& c) { return storage::SigningKeyRepository(c).list(); });
    auto ring = std::make_shared<Ring>();
    ring->generation = generation;
    // The signer: the active key of the preferred algorithm, else the oldest active one.
    const storage::SigningKey* chosen = nullptr;
    for (const auto& row : rows) {
        if (row.retired_at) continue;
        if (from_storage(row.algorithm) == preferred_) {
            chosen = &row;
            break;
        }
        if (!chosen) chosen = &row;
    }
    for (const auto& row : rows) {
        PublicKeyInfo info = public_info(row);
        info.signing = chosen == &row;
        ring->keys.push_back(std::move(info));
    }
    if (chosen) {
        try {
            ring->signer = std::make_shared<const SigningKey>(SigningKey::from_private_pem(chosen->private_key_pem));
        } catch (const SigningError& e) {
            // A damaged row must not take polls down with it: no signer, loudly.
            util::log_event(*util::logger("keys"), spdlog::level::err, "signing_key_unusable",
                            {{"key_id", chosen->key_id}, {"error", e.what()}});
            for (auto& k : ring->keys) k.signing = false;
        }
    }
    return ring;
}

}  // namespace otad::domain
