// The CPU kernels' worker pool and how many threads it gets (see ailut_pool.h).
#include "ailut_pool.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <system_error>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace ailut {

namespace {

// A positive integer from the environment, or -1 when unset or not one.
int env_int(const char* name) {
  const char* s = std::getenv(name);
  if (s == nullptr || *s == '\0') return -1;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (*end != '\0' || v < 0) return -1;
  return static_cast<int>(std::min<long>(v, 1 << 20));
}

}  // namespace

// ---------------------------------------------------------------- the pool

WorkerPool::WorkerPool(int threads) {
  const int wanted = std::max(0, std::min(threads, kMaxPoolThreads) - 1);
  // Test hook: AILUT_TEST_FAIL_THREADS_AFTER=N makes starting a worker fail once N
  // workers exist, as it would when the system is out of threads or memory.
  const int fail_after = env_int("AILUT_TEST_FAIL_THREADS_AFTER");
  try {
    workers_.reserve(wanted);  // emplace_back below never reallocates
  } catch (...) {
    return;
  }
  for (int t = 0; t < wanted; ++t) {
    try {
      if (fail_after >= 0 && t >= fail_after) {
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
      }
      workers_.emplace_back([this] { worker_loop(); });
    } catch (...) {
      break;  // run with the workers started so far
    }
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

int64_t WorkerPool::work_on(Job& job, std::exception_ptr* error) {
  int64_t done = 0;
  for (;;) {
    const int64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job.count) break;
    try {
      job.call(job.ctx, i);
    } catch (...) {
      if (!*error) *error = std::current_exception();
    }
    ++done;
  }
  return done;
}

void WorkerPool::run_items(int64_t count, ItemFn call, const void* ctx) {
  if (count <= 0) return;
  if (count == 1 || workers_.empty()) {
    for (int64_t i = 0; i < count; ++i) call(ctx, i);
    return;
  }
  Job job;
  job.call = call;
  job.ctx = ctx;
  job.count = count;
  std::fegetenv(&job.fenv);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(&job);
  }
  if (count - 1 >= static_cast<int64_t>(workers_.size())) {
    wake_.notify_all();
  } else {
    for (int64_t k = 0; k < count - 1; ++k) wake_.notify_one();
  }
  std::exception_ptr error;
  const int64_t mine = work_on(job, &error);
  std::unique_lock<std::mutex> lock(mu_);
  // Once off the queue no worker can start helping, so after the wait below none
  // holds a pointer to `job`.
  const auto it = std::find(queue_.begin(), queue_.end(), &job);
  if (it != queue_.end()) queue_.erase(it);
  job.finished += mine;
  if (error && !job.error) job.error = error;
  job.done.wait(lock, [&] { return job.finished == job.count && job.helpers == 0; });
  if (job.error) std::rethrow_exception(job.error);
}

void WorkerPool::worker_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Job* job = queue_.front();
    if (job->next.load(std::memory_order_relaxed) >= job->count) {
      queue_.pop_front();  // every item is claimed: nothing left to help with
      continue;
    }
    ++job->helpers;
    lock.unlock();
    std::fenv_t own;
    std::fegetenv(&own);
    std::fesetenv(&job->fenv);
    std::exception_ptr error;
    const int64_t mine = work_on(*job, &error);
    std::fesetenv(&own);
    lock.lock();
    --job->helpers;
    job->finished += mine;
    if (error && !job->error) job->error = error;
    // Notified under the lock: the caller cannot return (and destroy `job`) before
    // this thread has let go of the lock in its next wait.
    if (job->finished == job->count && job->helpers == 0) job->done.notify_all();
  }
}

// ---------------------------------------------------------------- sizing

namespace {

int affinity_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min<unsigned>(hw, 1u << 20));
}

// CPUs allowed by a quota of `quota` microseconds per `period`, rounded up; -1 if none.
int quota_cpus(double quota, double period) {
  if (!(quota > 0) || !(period > 0)) return -1;
  return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

// cgroup v2 "max 100000" / "200000 100000", or v1 quota and period files.
int read_quota(const std::string& dir) {
  {
    std::ifstream f(dir + "/cpu.max");
    std::string quota;
    double period = 0;
    if (f >> quota >> period) {
      if (quota == "max") return -1;
      return quota_cpus(std::strtod(quota.c_str(), nullptr), period);
    }
  }
  std::ifstream q(dir + "/cpu.cfs_quota_us");
  std::ifstream p(dir + "/cpu.cfs_period_us");
  double quota = -1, period = 0;
  if ((q >> quota) && (p >> period)) return quota_cpus(quota, period);
  return -1;
}

// The tightest CPU quota on this process's cgroup and its ancestors, or -1.
int cgroup_cpus() {
  int best = -1;
  auto consider = [&best](int n) {
    if (n > 0 && (best < 0 || n < best)) best = n;
  };
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1).
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::vector<std::string> roots;
    if (controllers.empty()) {
      roots = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {
      roots = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/" + controllers};
    } else {
      continue;
    }
    for (const auto& root : roots) {
      // Walk from the process's own cgroup up to the root of the hierarchy.
      std::string p = path;
      for (;;) {
        consider(read_quota(root + (p == "/" ? "" : p)));
        if (p.empty() || p == "/") break;
        const size_t slash = p.rfind('/');
        p = slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
      }
    }
  }
  return best;
}

struct SharedPool {
  std::mutex mu;
  std::shared_ptr<WorkerPool> pool;
};

// Never destroyed: workers blocked at process exit are simply ended with the process,
// and no static destructor races a call still running on another thread.
SharedPool& shared() {
  static SharedPool* s = [] {
    auto* p = new SharedPool;
#if defined(__linux__)
    // A forked child has the pool's memory but none of its threads: it leaves the
    // parent's pool alone (leaked, never joined) and starts its own on first use.
    pthread_atfork([] { shared().mu.lock(); }, [] { shared().mu.unlock(); },
                   [] {
                     auto& sp = shared();
                     new std::shared_ptr<WorkerPool>(std::move(sp.pool));
                     sp.mu.unlock();
                   });
#endif
    return p;
  }();
  return *s;
}

}  // namespace

int configured_threads() {
  const int env = env_int("AILUT_NUM_THREADS");
  int n;
  if (env > 0) {
    n = env;
  } else {
    n = affinity_cpus();
    const int quota = cgroup_cpus();
    if (quota > 0) n = std::min(n, quota);
  }
  return std::max(1, std::min(n, kMaxPoolThreads));
}

std::shared_ptr<WorkerPool> shared_pool() {
  auto& sp = shared();
  std::lock_guard<std::mutex> lock(sp.mu);
  if (!sp.pool) sp.pool = std::make_shared<WorkerPool>(configured_threads());
  return sp.pool;
}

void reset_shared_pool(int threads) {
  auto fresh = std::make_shared<WorkerPool>(threads > 0 ? threads : configured_threads());
  std::shared_ptr<WorkerPool> old;
  {
    auto& sp = shared();
    std::lock_guard<std::mutex> lock(sp.mu);
    old = std::move(sp.pool);
    sp.pool = std::move(fresh);
  }
  // `old` is joined here, outside the lock, unless a call still holds it.
}

}  // namespace ailut
