#include "otad/domain/blob_cache.hpp"

#include <algorithm>
#include <atomic>
#include <list>
#include <stdexcept>
#include <unordered_map>

#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Statement.h>

#include "otad/storage/blob_store.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

using Clock = std::chrono::steady_clock;

// A map with least-recently-used eviction. Keys are owned by the list nodes; the
// index holds views of them (list nodes never move), so lookups by string_view
// allocate nothing.
template <class Value>
class LruMap {
public:
    explicit LruMap(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

    // The value, marked most recently used; nullptr if absent.
    Value* find(std::string_view key) {
        auto it = index_.find(key);
        if (it == index_.end()) return nullptr;
        order_.splice(order_.begin(), order_, it->second);
        return &it->second->value;
    }

    // Inserts or replaces; returns how many entries were evicted to make room.
    std::size_t put(std::string key, Value value) {
        if (Value* existing = find(key)) {
            *existing = std::move(value);
            return 0;
        }
        order_.push_front(Node{std::move(key), std::move(value)});
        index_.emplace(std::string_view(order_.front().key), order_.begin());
        std::size_t evicted = 0;
        while (order_.size() > capacity_) {
            index_.erase(std::string_view(order_.back().key));
            order_.pop_back();
            ++evicted;
        }
        return evicted;
    }

    bool erase(std::string_view key) {
        auto it = index_.find(key);
        if (it == index_.end()) return false;
        auto node = it->second;
        index_.erase(it);
        order_.erase(node);
        return true;
    }

    template <class Predicate>
    std::size_t erase_if(Predicate&& predicate) {
        std::size_t erased = 0;
        for (auto it = order_.begin(); it != order_.end();) {
            if (predicate(std::string_view(it->key), it->value)) {
                index_.erase(std::string_view(it->key));
                it = order_.erase(it);
                ++erased;
            } else {
                ++it;
            }
        }
        return erased;
    }

    template <class Fn>
    void for_each(Fn&& fn) {
        for (auto& node : order_) fn(node.value);
    }

    std::size_t size() const noexcept { return order_.size(); }
    void clear() noexcept {
        index_.clear();
        order_.clear();
    }

private:
    struct Node {
        std::string key;
        Value value;
    };
    std::size_t capacity_;
    std::list<Node> order_;  // most recently used first
    std::unordered_map<std::string_view, typename std::list<Node>::iterator> index_;
};

struct BlobEntry {
    std::shared_ptr<const CachedBlob> blob;
    Clock::time_point loaded;  // when its rows were read
    bool stale = false;        // re-read the rows on next use (invalidate_product)
};

struct ArtifactEntry {
    std::shared_ptr<const CachedArtifact> artifact;
    Clock::time_point loaded;
};

struct AccessEntry {
    std::int64_t product_id = 0;
    std::optional<std::string> key_name;
    Clock::time_point granted;
};

std::string artifact_key(std::string_view product, std::string_view version, std::string_view filename) {
    // NUL cannot occur in a decoded path segment the router hands us (net rejects
    // it) nor in the stored names, so the key is unambiguous.
    std::string key;
    key.reserve(product.size() + version.size() + filename.size() + 2);
    key.append(product).push_back('\0');
    key.append(version).push_back('\0');
    key.append(filename);
    return key;
}

std::string access_key(std::int64_t product_id, std::string_view key_digest) {
    std::string key = std::to_string(product_id);
    key.push_back(':');
    key.append(key_digest);
    return key;
}

}  // namespace

struct BlobCache::State {
    explicit State(const BlobCacheOptions& options)
        : blobs(options.max_blobs),
          artifacts(options.max_artifacts),
          access(options.max_access_entries),
          verified_urls(options.max_verified_urls) {}

    mutable std::mutex mutex;
    LruMap<BlobEntry> blobs;
    LruMap<ArtifactEntry> artifacts;
    LruMap<AccessEntry> access;
    LruMap<bool> verified_urls;  // a set: the value is unused
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t files_opened = 0;
    std::uint64_t evictions = 0;
    std::uint64_t invalidations = 0;
};

struct BlobCache::BlobRows {
    storage::BlobRecord record;
    std::vector<std::string> filenames;
    std::vector<std::int64_t> product_ids;
};

BlobCache::BlobCache(storage::Database& database, storage::BlobStore& store, BlobCacheOptions options)
    : database_(database), store_(store), options_(options), state_(std::make_unique<State>(options_)) {}

BlobCache::~BlobCache() = default;

std::optional<BlobCache::BlobRows> BlobCache::read_blob_rows(std::string_view sha256) {
    return database_.read([&](storage::Connection& c) -> std::optional<BlobRows> {
        auto record = storage::CatalogueRepository(c).find_blob(sha256);
        if (!record) return std::nullopt;
        BlobRows rows{std::move(*record), {}, {}};
        // Who uses the blob: file names for Content-Disposition, products for
        // device access. (Read-only; the catalogue repository has no such query.)
        auto users = c.prepare(
            "SELECT a.filename, r.product_id FROM artifacts a JOIN releases r ON r.id = a.release_id "
            "WHERE a.sha256 = ? ORDER BY a.id");
        users->bind(1, std::string(sha256));
        while (users->executeStep()) {
            std::string filename = users->getColumn(0).getString();
            if (std::find(rows.filenames.begin(), rows.filenames.end(), filename) == rows.filenames.end())
                rows.filenames.push_back(std::move(filename));
            rows.product_ids.push_back(users->getColumn(1).getInt64());
        }
        std::sort(rows.product_ids.begin(), rows.product_ids.end());
        rows.product_ids.erase(std::unique(rows.product_ids.begin(), rows.product_ids.end()), rows.product_ids.end());
        return rows;
    });
}

std::shared_ptr<const CachedBlob> BlobCache::load_blob(std::string_view sha256,
                                                       std::shared_ptr<const platform::MappedFile> reuse) {
    auto rows = read_blob_rows(sha256);
    if (!rows) return nullptr;
    auto blob = std::make_shared<CachedBlob>();
    blob->sha256 = std::string(sha256);
    if (reuse) {
        blob->file = std::move(reuse);
    } else {
        try {
            blob->file = platform::MappedFile::open(store_.path_for(sha256));
        } catch (const std::exception& e) {
            throw std::runtime_error("blob " + blob->sha256 + " is recorded but its file cannot be read: " + e.what());
        }
        std::lock_guard lock(state_->mutex);
        ++state_->files_opened;
    }
    if (blob->file->size() != rows->record.size)
        throw std::runtime_error("blob " + blob->sha256 + " is recorded with " + std::to_string(rows->record.size) +
                                 " bytes but its file has " + std::to_string(blob->file->size()));
    blob->size = rows->record.size;
    blob->etag = "\"" + blob->sha256 + "\"";
    blob->created_at = rows->record.created_at;
    blob->last_modified = util::http_date(blob->created_at);
    blob->filenames = std::move(rows->filenames);
    blob->product_ids = std::move(rows->product_ids);
    return blob;
}

std::shared_ptr<const CachedBlob> BlobCache::blob(std::string_view sha256) {
    if (!storage::BlobStore::is_valid_sha256(sha256)) return nullptr;
    std::shared_ptr<const platform::MappedFile> reuse;
    {
        std::lock_guard lock(state_->mutex);
        if (BlobEntry* entry = state_->blobs.find(sha256)) {
            if (!entry->stale && Clock::now() - entry->loaded < options_.revalidate_after) {
                ++state_->hits;
                return entry->blob;
            }
            reuse = entry->blob->file;  // same name, same bytes: only the rows are re-read
        }
        ++state_->misses;
    }
    auto loaded_at = Clock::now();
    auto blob = load_blob(sha256, std::move(reuse));
    std::lock_guard lock(state_->mutex);
    if (!blob) {
        state_->blobs.erase(sha256);
        return nullptr;
    }
    state_->evictions += state_->blobs.put(blob->sha256, BlobEntry{blob, loaded_at});
    return blob;
}

ArtifactLookup BlobCache::artifact(std::string_view product, std::string_view version, std::string_view filename) {
    std::string key = artifact_key(product, version, filename);
    {
        std::lock_guard lock(state_->mutex);
        if (ArtifactEntry* entry = state_->artifacts.find(key)) {
            if (Clock::now() - entry->loaded < options_.revalidate_after) {
                ++state_->hits;
                return {ArtifactLookup::Status::found, entry->artifact, entry->artifact->product_id, {}};
            }
        }
        ++state_->misses;
    }

    auto loaded_at = Clock::now();
    struct Found {
        ArtifactLookup::Status status = ArtifactLookup::Status::not_found;
        std::string detail;
        storage::Artifact artifact;
        std::int64_t product_id = 0;
    };
    Found found = database_.read([&](storage::Connection& c) {
        Found f;
        storage::CatalogueRepository catalogue(c);
        auto p = catalogue.find_product(product);
        if (!p) {
            f.detail = "no product named '" + std::string(product) + "'";
            return f;
        }
        f.product_id = p->id;
        auto r = catalogue.find_release(p->id, version);
        if (!r) {
            f.detail = "product '" + std::string(product) + "' has no release '" + std::string(version) + "'";
            return f;
        }
        std::vector<storage::Artifact> matches;
        for (auto& a : catalogue.list_artifacts(r->id))
            if (a.filename == filename) matches.push_back(std::move(a));
        if (matches.empty()) {
            f.detail = "release '" + std::string(version) + "' of product '" + std::string(product) +
                       "' has no file named '" + std::string(filename) + "'";
            return f;
        }
        for (const auto& m : matches) {
            if (m.sha256 != matches.front().sha256) {
                f.status = ArtifactLookup::Status::ambiguous;
                f.detail = "release '" + std::string(version) + "' of product '" + std::string(product) + "' has " +
                           std::to_string(matches.size()) + " different images named '" + std::string(filename) +
                           "'; download them by their blob URL";
                return f;
            }
        }
        // Identical bytes under one name: the oldest artifact speaks for them.
        f.status = ArtifactLookup::Status::found;
        f.artifact = std::move(*std::min_element(matches.begin(), matches.end(),
                                                 [](const auto& a, const auto& b) { return a.id < b.id; }));
        return f;
    });

    if (found.status != ArtifactLookup::Status::found) {
        std::lock_guard lock(state_->mutex);
        state_->artifacts.erase(key);
        return {found.status, nullptr, found.product_id, std::move(found.detail)};
    }
    auto blob = this->blob(found.artifact.sha256);
    if (!blob)  // the artifact row references the blob (foreign key): gone in between
        return {ArtifactLookup::Status::not_found, nullptr, found.product_id,
                "the file '" + std::string(filename) + "' was removed"};
    auto cached = std::make_shared<CachedArtifact>();
    cached->product_id = found.product_id;
    cached->release_id = found.artifact.release_id;
    cached->artifact_id = found.artifact.id;
    cached->filename = found.artifact.filename;
    cached->created_at = found.artifact.created_at;
    cached->last_modified = util::http_date(cached->created_at);
    cached->blob = std::move(blob);
    std::lock_guard lock(state_->mutex);
    state_->evictions += state_->artifacts.put(std::move(key), ArtifactEntry{cached, loaded_at});
    auto product_id = cached->product_id;
    return {ArtifactLookup::Status::found, std::move(cached), product_id, {}};
}

std::optional<std::optional<std::string>> BlobCache::recall_access(std::int64_t product_id,
                                                                   std::string_view key_digest) {
    std::string key = access_key(product_id, key_digest);
    std::lock_guard lock(state_->mutex);
    AccessEntry* entry = state_->access.find(key);
    if (entry == nullptr) return std::nullopt;
    if (Clock::now() - entry->granted >= options_.access_ttl) {
        state_->access.erase(key);
        return std::nullopt;
    }
    return entry->key_name;
}

void BlobCache::remember_access(std::int64_t product_id, std::string_view key_digest,
                                std::optional<std::string> key_name) {
    std::string key = access_key(product_id, key_digest);
    std::lock_guard lock(state_->mutex);
    state_->evictions += state_->access.put(std::move(key), AccessEntry{product_id, std::move(key_name), Clock::now()});
}

bool BlobCache::recall_verified_url(std::string_view url) {
    std::lock_guard lock(state_->mutex);
    return state_->verified_urls.find(url) != nullptr;
}

void BlobCache::remember_verified_url(std::string_view url) {
    std::lock_guard lock(state_->mutex);
    state_->evictions += state_->verified_urls.put(std::string(url), true);
}

void BlobCache::invalidate(std::string_view sha256) {
    std::lock_guard lock(state_->mutex);
    if (state_->blobs.erase(sha256)) ++state_->invalidations;
    state_->invalidations += state_->artifacts.erase_if(
        [&](std::string_view, const ArtifactEntry& e) { return e.artifact->blob->sha256 == sha256; });
}

void BlobCache::invalidate_product(std::int64_t product_id) {
    std::lock_guard lock(state_->mutex);
    state_->invalidations += state_->artifacts.erase_if(
        [&](std::string_view, const ArtifactEntry& e) { return e.artifact->product_id == product_id; });
    state_->invalidations +=
        state_->access.erase_if([&](std::string_view, const AccessEntry& e) { return e.product_id == product_id; });
    // Which products use a blob may have changed (an artifact added or removed):
    // re-read on next use, keeping the mappings.
    state_->blobs.for_each([](BlobEntry& e) { e.stale = true; });
}

void BlobCache::invalidate_product(std::string_view product_name) {
    auto product = database_.read(
        [&](storage::Connection& c) { return storage::CatalogueRepository(c).find_product(product_name); });
    if (product) invalidate_product(product->id);
    std::string prefix(product_name);
    prefix.push_back('\0');
    std::lock_guard lock(state_->mutex);
    state_->invalidations +=
        state_->artifacts.erase_if([&](std::string_view key, const ArtifactEntry&) { return key.starts_with(prefix); });
}

void BlobCache::clear() {
    std::lock_guard lock(state_->mutex);
    state_->invalidations += state_->blobs.size() + state_->artifacts.size() + state_->access.size();
    state_->blobs.clear();
    state_->artifacts.clear();
    state_->access.clear();
    state_->verified_urls.clear();
}

BlobCacheStats BlobCache::stats() const {
    std::lock_guard lock(state_->mutex);
    BlobCacheStats s;
    s.hits = state_->hits;
    s.misses = state_->misses;
    s.files_opened = state_->files_opened;
    s.evictions = state_->evictions;
    s.invalidations = state_->invalidations;
    s.blobs = state_->blobs.size();
    s.artifacts = state_->artifacts.size();
    s.access_entries = state_->access.size();
    s.verified_urls = state_->verified_urls.size();
    return s;
}

}  // namespace otad::domain
