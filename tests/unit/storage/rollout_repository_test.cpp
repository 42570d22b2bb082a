#include "otad/storage/rollout_repository.hpp"

#include <random>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/device_repository.hpp"
#include "otad/storage/error.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;

namespace {

class RolloutRepositoryTest : public otad::storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        lease.emplace(db->lease());
        CatalogueRepository catalogue(lease->get());
        product_id = catalogue.create_product("app").id;
        base_id = catalogue.create_release(product_id, "1.0.0").id;
        target_id = catalogue.create_release(product_id, "1.1.0").id;
        other_id = catalogue.create_release(product_id, "1.2.0").id;
        repo.emplace(lease->get());
    }
    void TearDown() override {
        repo.reset();
        lease.reset();
        MigratedDatabaseTest::TearDown();
    }

    NewRollout new_rollout(std::string channel = "stable", std::int64_t at = 1000) {
        NewRollout n;
        n.product_id = product_id;
        n.channel = std::move(channel);
        n.base_release_id = base_id;
        n.target_release_id = target_id;
        n.base_version = "1.0.0";
        n.target_version = "1.1.0";
        n.stages = {{100, 60}, {1000, std::nullopt}, {10000, 0}};
        n.created_by = "token:ops";
        n.at = at;
        return n;
    }

    void add_devices(int count, const std::string& prefix = "dev-") {
        std::vector<DeviceSighting> batch;
        for (int i = 0; i < count; ++i) {
            DeviceSighting s;
            s.id = prefix + std::to_string(i);
            s.product_id = product_id;
            s.chip = i % 2 ? "esp32" : "esp8266";
            s.layout = i % 2 ? "ota" : "512+512";
            s.version = i % 3 ? "1.0.0" : "0.9.0";
            s.channel = "stable";
            s.seen_at = 100;
            batch.push_back(s);
        }
        DeviceRepository(lease->get()).upsert_many(batch);
    }

    std::optional<ConnectionLease> lease;
    std::optional<RolloutRepository> repo;
    std::int64_t product_id = 0, base_id = 0, target_id = 0, other_id = 0;
};

TEST_F(RolloutRepositoryTest, CreateStoresTheRolloutAndItsStagesWithZeroCounters) {
    Rollout r = repo->create(new_rollout());
    EXPECT_GT(r.id, 0);
    EXPECT_EQ(r.state, RolloutState::running);
    EXPECT_EQ(r.current_stage, 0);
    EXPECT_EQ(r.stage_started_at, 1000);
    EXPECT_EQ(r.base_version, "1.0.0");
    EXPECT_EQ(r.target_version, "1.1.0");
    EXPECT_EQ(r.created_by, "token:ops");
    ASSERT_EQ(r.stages.size(), 3u);
    EXPECT_EQ(r.stages[0].percent_bp, 100);
    EXPECT_EQ(r.stages[0].hold_s, 60);
    EXPECT_EQ(r.stages[0].started_at, 1000);
    EXPECT_FALSE(r.stages[1].hold_s.has_value());
    EXPECT_FALSE(r.stages[1].started_at.has_value());
    EXPECT_EQ(r.stages[2].hold_s, 0);
    EXPECT_EQ(r.totals(), RolloutCounters{});
    EXPECT_EQ(repo->get(r.id)->stages.size(), 3u);
    EXPECT_EQ(repo->active_for_channel(product_id, "stable")->id, r.id);
    EXPECT_FALSE(repo->active_for_channel(product_id, "beta").has_value());
}

TEST_F(RolloutRepositoryTest, OneActiveRolloutPerChannelIsEnforcedByTheSchema) {
    Rollout first = repo->create(new_rollout());
    try {
        repo->create(new_rollout());
        FAIL() << "a second active rollout on the channel was stored";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::conflict);
    }
    EXPECT_NO_THROW(repo->create(new_rollout("beta")));  // another channel
    ASSERT_TRUE(repo->finish(first.id, RolloutState::aborted, false, 1100));
    EXPECT_NO_THROW(repo->create(new_rollout()));  // the channel is free again
}

TEST_F(RolloutRepositoryTest, PauseAndResumeAreCompareAndSetAndTheHoldClockSkipsThePause) {
    Rollout r = repo->create(new_rollout());
    EXPECT_FALSE(repo->resume(r.id, 1010, std::nullopt));  // not paused
    ASSERT_TRUE(repo->pause(r.id, "gate", R"({"failure_ratio":0.5})", 1020));
    EXPECT_FALSE(repo->pause(r.id, "operator", "{}", 1021));  // already paused: the first reason stays
    Rollout paused = *repo->get(r.id);
    EXPECT_EQ(paused.state, RolloutState::paused);
    EXPECT_EQ(paused.pause_reason, "gate");
    EXPECT_EQ(paused.paused_at, 1020);
    EXPECT_EQ(paused.pause_detail_json, R"({"failure_ratio":0.5})");

    ASSERT_TRUE(repo->resume(r.id, 1050, std::nullopt));
    EXPECT_FALSE(repo->resume(r.id, 1051, std::nullopt));  // a second resume changes nothing
    Rollout running = *repo->get(r.id);
    EXPECT_EQ(running.state, RolloutState::running);
    EXPECT_EQ(running.stage_started_at, 1030);  // 1000 + (1050 - 1020)
    EXPECT_EQ(running.pause_reason, "");
    EXPECT_FALSE(running.paused_at.has_value());
}

TEST_F(RolloutRepositoryTest, ForcedResumeRecordsTheGateBaseline) {
    Rollout r = repo->create(new_rollout());
    ASSERT_TRUE(repo->pause(r.id, "gate", "{}", 1010));
    RolloutCounters baseline;
    baseline.offered = 40;
    baseline.failed = 5;
    baseline.silent = 2;
    baseline.rolled_back = 3;
    ASSERT_TRUE(repo->resume(r.id, 1020, baseline));
    Rollout resumed = *repo->get(r.id);
    EXPECT_EQ(resumed.gate_base_offered, 40);
    EXPECT_EQ(resumed.gate_base_failed, 7);
    EXPECT_EQ(resumed.gate_base_rolled_back, 3);
}

TEST_F(RolloutRepositoryTest, AdvanceMovesOneStageOnceAndNeverPastTheLast) {
    Rollout r = repo->create(new_rollout());
    ASSERT_TRUE(repo->advance(r.id, 0, 1100));
    EXPECT_FALSE(repo->advance(r.id, 0, 1101));  // a second writer that read stage 0 loses
    Rollout now = *repo->get(r.id);
    EXPECT_EQ(now.current_stage, 1);
    EXPECT_EQ(now.stage_started_at, 1100);
    EXPECT_EQ(now.stages[1].started_at, 1100);
    ASSERT_TRUE(repo->advance(r.id, 1, 1200));
    EXPECT_FALSE(repo->advance(r.id, 2, 1300));  // no stage 3
    EXPECT_EQ(repo->get(r.id)->current_stage, 2);

    ASSERT_TRUE(repo->pause(r.id, "operator", "{}", 1400));
    Rollout other = repo->create(new_rollout("beta"));
    ASSERT_TRUE(repo->pause(other.id, "operator", "{}", 1400));
    EXPECT_FALSE(repo->advance(other.id, 0, 1500));  // paused rollouts do not advance
}

TEST_F(RolloutRepositoryTest, TheSchemaKeepsStagesForwardAndFinishedRolloutsFinished) {
    Rollout r = repo->create(new_rollout());
    ASSERT_TRUE(repo->advance(r.id, 0, 1100));
    const std::string id = std::to_string(r.id);
    EXPECT_THROW(lease->get().execute_script("UPDATE rollouts SET current_stage = 0 WHERE id = " + id),
                 SQLite::Exception);

    ASSERT_TRUE(repo->finish(r.id, RolloutState::completed, false, 1200));
    EXPECT_FALSE(repo->finish(r.id, RolloutState::aborted, true, 1300));
    EXPECT_FALSE(repo->pause(r.id, "operator", "{}", 1300));
    EXPECT_THROW(
        lease->get().execute_script("UPDATE rollouts SET state = 'running', finished_at = NULL WHERE id = " + id),
        SQLite::Exception);
    Rollout done = *repo->get(r.id);
    EXPECT_EQ(done.state, RolloutState::completed);
    EXPECT_EQ(done.finished_at, 1200);
}

TEST_F(RolloutRepositoryTest, AReleaseOfAnActiveRolloutCannotBeDeletedAndAFinishedOneKeepsItsVersions) {
    Rollout r = repo->create(new_rollout());
    CatalogueRepository catalogue(lease->get());
    try {
        catalogue.delete_release(target_id);
        FAIL() << "deleted the target of a running rollout";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::rejected) << e.what();
    }
    EXPECT_EQ(repo->active_for_release(target_id).size(), 1u);
    EXPECT_EQ(repo->active_for_release(base_id).size(), 1u);
    EXPECT_TRUE(repo->active_for_release(other_id).empty());

    ASSERT_TRUE(repo->finish(r.id, RolloutState::aborted, false, 1100));
    EXPECT_TRUE(catalogue.delete_release(target_id));
    Rollout after = *repo->get(r.id);
    EXPECT_FALSE(after.target_release_id.has_value());
    EXPECT_EQ(after.target_version, "1.1.0");
}

TEST_F(RolloutRepositoryTest, ForProductListsActiveRolloutsAndTheNewestAbortedOnePerChannel) {
    Rollout old = repo->create(new_rollout("stable", 1000));
    ASSERT_TRUE(repo->finish(old.id, RolloutState::aborted, false, 1001));
    Rollout newer = repo->create(new_rollout("stable", 1002));
    ASSERT_TRUE(repo->finish(newer.id, RolloutState::aborted, true, 1003));
    Rollout completed = repo->create(new_rollout("beta", 1004));
    ASSERT_TRUE(repo->finish(completed.id, RolloutState::completed, false, 1005));
    Rollout running = repo->create(new_rollout("nightly", 1006));

    std::vector<std::int64_t> ids;
    for (const auto& r : repo->for_product(product_id)) ids.push_back(r.id);
    EXPECT_EQ(ids, (std::vector<std::int64_t>{newer.id, running.id}));
    EXPECT_EQ(repo->all_active().size(), 1u);
    EXPECT_EQ(repo->list(product_id, 2).size(), 2u);
    EXPECT_EQ(repo->list(product_id, 10).front().id, running.id);  // newest first
}

TEST_F(RolloutRepositoryTest, MemberTransitionsMoveCountersThatEqualARecount) {
    add_devices(50);
    Rollout r = repo->create(new_rollout());
    std::mt19937 random(7);
    const MemberState states[] = {MemberState::eligible,  MemberState::offered, MemberState::downloading,
                                  MemberState::installed, MemberState::failed,  MemberState::rolled_back,
                                  MemberState::silent};
    WriteTransaction tx(lease->get());  // one commit (and fsync) for the whole walk
    for (int step = 0; step < 2000; ++step) {
        std::string id = "dev-" + std::to_string(random() % 50);
        auto before = repo->member(r.id, id);
        RolloutMember after;
        after.rollout_id = r.id;
        after.device_id = id;
        after.stage = static_cast<int>(random() % 3);
        after.state = states[random() % 7];
        if (after.state != MemberState::eligible || random() % 2) after.offered_at = 100 + step;
        after.updated_at = 100 + step;
        repo->put_member(before, after);
    }
    tx.commit();
    Rollout now = *repo->get(r.id);
    auto recount = repo->recount(r.id);
    ASSERT_EQ(recount.size(), now.stages.size());
    for (std::size_t i = 0; i < recount.size(); ++i) EXPECT_EQ(now.stages[i].counters, recount[i]) << "stage " << i;
    EXPECT_EQ(now.totals().eligible, 50);
}

TEST_F(RolloutRepositoryTest, AFailedMemberWriteIsSkippedWithoutLosingTheRestOfTheTransaction) {
    add_devices(2);
    Rollout r = repo->create(new_rollout());
    WriteTransaction tx(lease->get());
    EXPECT_FALSE(repo->put_member_or_skip(std::nullopt, {r.id, "dev-0", 0, MemberState::offered, 100, 100}));
    // Moving dev-1 out of "downloading" it never was: the counter would go below zero.
    RolloutMember never{r.id, "dev-1", 0, MemberState::downloading, 100, 100};
    auto error = repo->put_member_or_skip(never, {r.id, "dev-1", 0, MemberState::installed, 100, 101});
    ASSERT_TRUE(error.has_value());
    EXPECT_NE(error->find("downloading >= 0"), std::string::npos) << *error;
    tx.commit();
    EXPECT_TRUE(repo->member(r.id, "dev-0").has_value());
    EXPECT_FALSE(repo->member(r.id, "dev-1").has_value());
    auto now = *repo->get(r.id);
    EXPECT_EQ(now.stages[0].counters, repo->recount(r.id)[0]);
    EXPECT_EQ(now.totals().offered, 1);
}

TEST_F(RolloutRepositoryTest, StaleMembersAreThoseStillWaitingOrDownloading) {
    add_devices(4);
    Rollout r = repo->create(new_rollout());
    auto put = [&](const std::string& id, MemberState state, std::int64_t at) {
        repo->put_member(repo->member(r.id, id), RolloutMember{r.id, id, 0, state, at, at});
    };
    put("dev-0", MemberState::offered, 100);
    put("dev-1", MemberState::downloading, 100);
    put("dev-2", MemberState::installed, 100);
    put("dev-3", MemberState::offered, 500);
    std::vector<std::string> stale;
    for (const auto& m : repo->stale_members(r.id, 200, 100)) stale.push_back(m.device_id);
    std::sort(stale.begin(), stale.end());
    EXPECT_EQ(stale, (std::vector<std::string>{"dev-0", "dev-1"}));
}

TEST_F(RolloutRepositoryTest, TagsAreSetPerDeviceAndChangedInBulkBySelection) {
    add_devices(6);
    repo->set_tags("dev-0", {"lab", "beta"});
    EXPECT_EQ(repo->tags("dev-0"), (std::vector<std::string>{"beta", "lab"}));
    repo->set_tags("dev-0", {"lab"});
    EXPECT_EQ(repo->tags("dev-0"), (std::vector<std::string>{"lab"}));

    DeviceSelection esp32;
    esp32.product_id = product_id;
    esp32.chip = "esp32";  // dev-1, dev-3, dev-5
    EXPECT_EQ(repo->change_tags(esp32, {"beta", "lab"}, {}), 3);
    EXPECT_EQ(repo->devices_with_tags(product_id, {"beta"}), (std::vector<std::string>{"dev-1", "dev-3", "dev-5"}));
    EXPECT_EQ(repo->devices_with_tags(product_id, {"lab"}),
              (std::vector<std::string>{"dev-0", "dev-1", "dev-3", "dev-5"}));

    DeviceSelection tagged;
    tagged.product_id = product_id;
    tagged.tag = "lab";
    tagged.version = "1.0.0";  // dev-1, dev-5 of the lab ones (dev-0 and dev-3 run 0.9.0)
    EXPECT_EQ(repo->change_tags(tagged, {}, {"beta"}), 2);
    EXPECT_EQ(repo->devices_with_tags(product_id, {"beta", "lab"}), (std::vector<std::string>{"dev-3"}));
    EXPECT_TRUE(repo->devices_with_tags(product_id, {"nothing"}).empty());
}

TEST_F(RolloutRepositoryTest, OverridesPinOrExcludeOneDeviceEach) {
    add_devices(3);
    repo->set_override({"dev-0", product_id, OverrideKind::pin, other_id, "", "debugging", 100, "token:ops"});
    repo->set_override({"dev-1", product_id, OverrideKind::exclude, std::nullopt, "", "", 100, "token:ops"});
    auto pin = repo->get_override("dev-0");
    ASSERT_TRUE(pin.has_value());
    EXPECT_EQ(pin->kind, OverrideKind::pin);
    EXPECT_EQ(pin->version, "1.2.0");
    EXPECT_EQ(pin->reason, "debugging");
    EXPECT_EQ(repo->overrides(product_id).size(), 2u);
    EXPECT_EQ(repo->pins_to_release(other_id), 1);
    // A pinned release cannot be deleted underneath the pin.
    EXPECT_THROW(CatalogueRepository(lease->get()).delete_release(other_id), StorageError);
    // A pin without a release breaks the schema's rule.
    EXPECT_THROW(repo->set_override({"dev-2", product_id, OverrideKind::pin, std::nullopt, "", "", 100, "x"}),
                 StorageError);
    // Replacing: the device is now excluded instead of pinned.
    repo->set_override({"dev-0", product_id, OverrideKind::exclude, std::nullopt, "", "", 101, "token:ops"});
    EXPECT_EQ(repo->get_override("dev-0")->kind, OverrideKind::exclude);
    EXPECT_EQ(repo->pins_to_release(other_id), 0);
    EXPECT_TRUE(repo->clear_override("dev-0"));
    EXPECT_FALSE(repo->clear_override("dev-0"));
    EXPECT_FALSE(repo->get_override("dev-0").has_value());
}

}  // namespace
