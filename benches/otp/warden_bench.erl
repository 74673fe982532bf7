%% The OTP side of warden-bench's "beside OTP" scenarios: the same scenarios, measured
%% the same way, with OTP's own `supervisor` and `gen_server`.
%%
%% warden-bench compiles this module at run time (erlc) and runs one scenario per VM:
%%
%%     erl -noshell -pa DIR -run warden_bench main SCENARIO N
%%
%% It prints one line per figure and halts:
%%
%%     samples NAME V1 V2 ...      latencies in microseconds, warm-up already left out
%%     figure NAME VALUE           one number (a rate, a duration, a size)
%%
%% A child is a gen_server that answers `{echo, Bin}` with Bin, counts casts, answers
%% `count` with the count, and crashes on `crash` (an error raised in handle_call, as a
%% trap is raised in a plugin's `handle`). A child started with a notify pid sends it
%% `{started, Name, self()}` from its init, as Warden's host publishes `child_started`.
%%
%% OTP's logger is set to level `none`, so crash and supervisor reports are not even
%% built; nothing is printed but the figures. Warden's events are published as always.
-module(warden_bench).

-export([main/1]).
%% The callbacks of both behaviours (one module is both the supervisor and the child).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, start_child/2]).

%% The restart intensity of a supervisor that must never give up.
-define(NEVER, 1000000000).

main([Scenario, N]) ->
    logger:set_primary_config(level, none),
    run(list_to_atom(Scenario), list_to_integer(N)),
    halt(0).

%% Embedder -> child -> reply: a gen_server:call of 64 bytes to a registered child.
run(call_64B, Samples) ->
    {ok, _} = supervisor(one_for_one, ?NEVER, 1, [child(echo, none)]),
    Payload = binary:copy(<<7>>, 64),
    Us = measure(Samples, fun() -> Payload = gen_server:call(echo, {echo, Payload}) end),
    samples(call_64B, Us);
%% A one_for_one permanent child crashes: from the crashing call to the new child's
%% answer to a call. A fresh supervisor every 20 restarts keeps its list of recent
%% restarts short (OTP walks it on every restart; see crash_loop).
run(restart, Samples) ->
    Us = in_fresh_trees(Samples, 20, fun() ->
        supervisor(one_for_one, ?NEVER, 1, [child(c, self())])
    end, fun() -> crash_and_answer(c, c) end),
    samples(restart, Us);
%% One of 100 children under one_for_all crashes: from the crashing call to the 100th
%% new child's answer to a call.
run(restart_all_100, Samples) ->
    Children = [child(name(I), self()) || I <- lists:seq(0, 99)],
    Us = in_fresh_trees(Samples, 20, fun() ->
        supervisor(one_for_all, ?NEVER, 1, Children)
    end, fun() -> crash_and_answer(c50, c99) end),
    samples(restart_all_100, Us);
%% One child crashing back to back for `Seconds`, under a supervisor that allows a
%% billion restarts a minute: every restart's time, as in `restart`.
run(crash_loop, Seconds) ->
    {ok, Sup} = supervisor(one_for_one, ?NEVER, 60, [child(c, self())]),
    started(c),
    Until = now_ns() + Seconds * 1000000000,
    Us = crash_loop(Until, []),
    unlink(Sup),
    samples(crash_loop, Us);
%% Pipeline throughput: `N` casts of 64 bytes to one child, then a call, which it
%% answers once it has handled them all (one mailbox, in order).
run(sends, N) ->
    {ok, _} = supervisor(one_for_one, ?NEVER, 1, [child(echo, none)]),
    Payload = binary:copy(<<7>>, 64),
    Rates = [begin
        Before = gen_server:call(echo, count),
        T = now_ns(),
        cast(N, Payload),
        Handled = gen_server:call(echo, count) - Before,
        Handled = N,
        N / ((now_ns() - T) / 1.0e9)
    end || _ <- lists:seq(1, 3)],
    figure(sends, lists:nth(2, lists:sort(Rates)));
%% `N` dynamic children of one simple_one_for_one supervisor, started one after
%% another: the time, and the growth of the VM's resident memory per child.
run(start_dynamic, N) ->
    Template = #{id => worker, start => {?MODULE, start_child, [undefined, none]}},
    {ok, Sup} = supervisor(simple_one_for_one, 0, 1, [Template]),
    erlang:garbage_collect(),
    Rss = rss_bytes(),
    T = now_ns(),
    start_dynamic(Sup, N),
    Ms = (now_ns() - T) / 1.0e6,
    figure(start_dynamic_ms, Ms),
    figure(start_dynamic_bytes_per_child, (rss_bytes() - Rss) / N),
    N = proplists:get_value(active, supervisor:count_children(Sup)).

%% The same warm-up as warden-bench's: a tenth of the samples more, left out.
measure(Samples, Fun) ->
    _ = [begin
        T = now_ns(),
        Fun(),
        (now_ns() - T) / 1000
    end || _ <- lists:seq(1, Samples div 10)],
    [begin
        T = now_ns(),
        Fun(),
        (now_ns() - T) / 1000
    end || _ <- lists:seq(1, Samples)].

%% `measure` in trees of `Start`, a fresh one for every `Each` samples (not timed).
in_fresh_trees(Samples, Each, Start, Fun) ->
    Warm = Samples div 10,
    Us = fresh_trees(Warm + Samples, Each, Start, Fun, []),
    lists:nthtail(Warm, Us).

fresh_trees(0, _, _, _, Acc) ->
    lists:reverse(Acc);
fresh_trees(Left, Each, Start, Fun, Acc) ->
    {ok, Sup} = Start(),
    flush_started(),
    Batch = min(Left, Each),
    Us = [begin
        T = now_ns(),
        Fun(),
        (now_ns() - T) / 1000
    end || _ <- lists:seq(1, Batch)],
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end,
    fresh_trees(Left - Batch, Each, Start, Fun, lists:reverse(Us, Acc)).

%% Crashes `Crash`, waits for `Last` to be started again and calls it.
crash_and_answer(Crash, Last) ->
    {'EXIT', _} = (catch gen_server:call(Crash, crash)),
    Pid = started(Last),
    <<>> = gen_server:call(Pid, {echo, <<>>}).

crash_loop(Until, Acc) ->
    T = now_ns(),
    crash_and_answer(c, c),
    Done = now_ns(),
    Acc1 = [(Done - T) / 1000 | Acc],
    case Done < Until of
        true -> crash_loop(Until, Acc1);
        false -> lists:reverse(Acc1)
    end.

%% The pid of `Name`'s next start, the notices of the others before it dropped.
started(Name) ->
    receive
        {started, Name, Pid} -> Pid;
        {started, _, _} -> started(Name)
    after 10000 -> error({not_started, Name})
    end.

flush_started() ->
    receive {started, _, _} -> flush_started() after 0 -> ok end.

cast(0, _) -> ok;
cast(N, Payload) ->
    gen_server:cast(echo, {echo, Payload}),
    cast(N - 1, Payload).

start_dynamic(_, 0) -> ok;
start_dynamic(Sup, N) ->
    {ok, _} = supervisor:start_child(Sup, []),
    start_dynamic(Sup, N - 1).

supervisor(Strategy, Intensity, Period, Children) ->
    Flags = #{strategy => Strategy, intensity => Intensity, period => Period},
    supervisor:start_link(?MODULE, {supervisor, Flags, Children}).

child(Name, Notify) ->
    #{id => Name, start => {?MODULE, start_child, [Name, Notify]}}.

name(I) -> list_to_atom("c" ++ integer_to_list(I)).

start_child(undefined, Notify) ->
    gen_server:start_link(?MODULE, {child, undefined, Notify}, []);
start_child(Name, Notify) ->
    gen_server:start_link({local, Name}, ?MODULE, {child, Name, Notify}, []).

init({supervisor, Flags, Children}) ->
    {ok, {Flags, Children}};
init({child, Name, Notify}) ->
    is_pid(Notify) andalso (Notify ! {started, Name, self()}),
    {ok, 0}.

handle_call({echo, Bin}, _From, Count) -> {reply, Bin, Count};
handle_call(count, _From, Count) -> {reply, Count, Count};
handle_call(crash, _From, _Count) -> error(crash).

handle_cast({echo, _Bin}, Count) -> {noreply, Count + 1}.

handle_info(_Info, Count) -> {noreply, Count}.

now_ns() -> erlang:monotonic_time(nanosecond).

%% VmRSS of this VM, from /proc.
rss_bytes() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(Status, <<"\n">>, [global]), binary:part(L, 0, min(6, byte_size(L))) =:= <<"VmRSS:">>],
    [_, Kb, <<"kB">>] = binary:split(Line, [<<" ">>, <<"\t">>], [global, trim_all]),
    binary_to_integer(Kb) * 1024.

samples(Name, Us) ->
    io:format("samples ~s~s~n", [Name, [io_lib:format(" ~.3f", [U]) || U <- Us]]).

figure(Name, Value) ->
    io:format("figure ~s ~.3f~n", [Name, float(Value)]).
