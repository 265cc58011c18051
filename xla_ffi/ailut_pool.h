// A persistent pool of worker threads for the CPU kernels.
//
// Work is handed over as `count` independent items; run() calls fn(i) once for every i
// in [0, count), on the calling thread and on whichever pool workers are free, and
// returns when all items are done. Workers run the items in the caller's floating-point
// environment: XLA's threads flush denormals to zero, fresh threads do not, and a
// denormal pixel must give the same result whichever thread handles it. Which thread runs an item
// never matters to the kernels: every item writes only its own outputs (see ailut_cpu.cc), so the
// results do not depend on the number of threads.
//
// One pool is shared by every call of the op in the process. A calling thread always
// works on its own items; the pool adds at most size() - 1 helpers in total, however
// many XLA devices call the op at once, so concurrent calls never start more threads
// than the pool was sized for.
#pragma once

#include <atomic>
#include <cfenv>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ailut {

// Upper bound on the pool size, whatever the environment asks for.
constexpr int kMaxPoolThreads = 64;

class WorkerPool {
 public:
  // `threads` counts the calling thread: threads - 1 workers are started. If starting
  // one fails, the pool keeps the workers it has (possibly none: everything then runs
  // on the calling thread).
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Threads that can work on one call: the caller plus the workers.
  int size() const { return 1 + static_cast<int>(workers_.size()); }

  // Calls fn(i) for every i in [0, count). An exception thrown by fn is rethrown here
  // after every item has finished.
  template <typename F>
  void run(int64_t count, const F& fn) {
    run_items(
        count, [](const void* ctx, int64_t i) { (*static_cast<const F*>(ctx))(i); }, &fn);
  }

 private:
  using ItemFn = void (*)(const void* ctx, int64_t item);
  struct Job {
    ItemFn call;
    const void* ctx;
    int64_t count;
    std::atomic<int64_t> next{0};
    int64_t finished = 0;  // guarded by mu_
    int helpers = 0;       // workers inside work_on(); guarded by mu_
    std::exception_ptr error;
    std::condition_variable done;
    std::fenv_t fenv;  // the caller's floating-point environment (rounding, denormals)
  };

  void run_items(int64_t count, ItemFn call, const void* ctx);
  static int64_t work_on(Job& job, std::exception_ptr* error);
  void worker_loop();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job*> queue_;  // jobs that may still have unclaimed items
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// Threads the pool is sized to: AILUT_NUM_THREADS when set to a positive integer,
// otherwise the CPUs in this process's affinity mask, lowered to the cgroup CPU quota
// (cgroup v2 cpu.max or v1 cpu.cfs_quota_us) when one is set; capped at kMaxPoolThreads.
int configured_threads();

// The process-wide pool, created on first use with configured_threads().
std::shared_ptr<WorkerPool> shared_pool();

// Replaces the process-wide pool by one of `threads` threads (configured_threads() when
// threads <= 0). Calls in flight finish on the pool they started with. For tests.
void reset_shared_pool(int threads);

}  // namespace ailut
