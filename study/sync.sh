#!/usr/bin/env bash
# Carries the CPU study's training across machines: runs/ is not kept between sessions, and a study longer than one
# session only resumes if what its cells produced is committed. `save` copies each cell's progress from the run
# directory into study/ (the finished weights, or the last checkpoint of an unfinished cell, each with its sha256,
# and the metrics that the validation figures read, but not config.json: study/'s is the published run's record and
# the trainer writes its own); `restore` copies it back without overwriting newer local files,
# so that `python -m hpc.launch` then finishes only the missing steps. TensorBoard events and evaluation stores stay
# out (they are rebuilt).
#
#   bash study/sync.sh restore [RUN_DIR [STUDY_DIR]]   # before a relaunch (defaults: runs/study_cpu study/study_cpu)
#   bash study/sync.sh save    [RUN_DIR [STUDY_DIR]]   # after it, or after stopping it; then commit STUDY_DIR
#
# `save` also appends to each cell's pieces.txt one line per training job that worked on it, read from the job's
# log (RUN_DIR/logs/train*/*_log.err): when it ended, the host, the code (HEAD at the first save that saw the job,
# "+uncommitted" when fluidperc/ or hpc/ differed from it), the steps it went from and to, and the time its progress
# bar showed. A later save of the same job (same log, same first step) updates its line rather than adding one. That
# is the only record of what each piece cost once the machine is gone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
verb=${1:-}
run=${2:-runs/study_cpu}
study=${3:-study/study_cpu}
case "$verb" in
  save|restore) ;;
  *) echo "usage: bash study/sync.sh save|restore [RUN_DIR [STUDY_DIR]]" >&2; exit 2 ;;
esac
if [ "$verb" = save ]; then src=$run/train; dst=$study/train; else src=$study/train; dst=$run/train; fi
if [ ! -d "$src" ]; then
  echo "study/sync.sh $verb: $src does not exist; expected the train/ folder of a run directory" >&2
  exit 2
fi
n=0
for cell in "$src"/*/; do
  name=$(basename "$cell")
  files=(metrics.jsonl)  # never config.json: study/'s are the published run's record, which the report reads
  if [ -f "$cell/result.json" ] && [ -f "$cell/model.pt" ]; then
    files+=(result.json model.pt model.pt.sha256)   # finished: the weights evaluation reads
  elif [ -f "$cell/checkpoint.pt" ]; then
    files+=(checkpoint.pt checkpoint.pt.sha256)     # unfinished: what the trainer resumes from
  else
    continue                                        # nothing trained yet (the study's cells from earlier runs)
  fi
  mkdir -p "$dst/$name"
  for f in "${files[@]}"; do
    [ -f "$cell/$f" ] || continue
    if [ "$verb" = save ]; then
      cp -p "$cell/$f" "$dst/$name/$f"
    else
      cp -pn "$cell/$f" "$dst/$name/$f"  # files already in the run directory win
    fi
  done
  if [ "$verb" = save ] && [ -f "$dst/$name/result.json" ] && [ ! -f "$cell/result.json" ]; then
    rm -f "$dst/$name/result.json" "$dst/$name/model.pt" "$dst/$name/model.pt.sha256"  # trained on: not done now
  fi
  if [ "$verb" = save ] && [ -f "$cell/result.json" ]; then
    rm -f "$dst/$name/checkpoint.pt" "$dst/$name/checkpoint.pt.sha256"  # finished: model.pt replaces it
  fi
  n=$((n + 1))
done
pieces=0 updated=0
if [ "$verb" = save ] && [ -d "$run/logs" ]; then
  code=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$here" diff --quiet HEAD -- "$here/../fluidperc" "$here/../hpc" 2>/dev/null || code="$code+uncommitted"
  for log in "$run"/logs/train*/*_log.err; do
    [ -f "$log" ] || continue
    bars=$(tr '\r' '\n' < "$log" | grep -E '^[^ :]+: +[0-9]+%\|' || true)  # tqdm's redraws, one per line
    [ -n "$bars" ] || continue
    name=${bars%%:*}
    [ -d "$dst/$name" ] || continue
    from=$(head -n1 <<<"$bars" | grep -oE ' [0-9]+/[0-9]+ ' | head -n1 | tr -d ' ' | cut -d/ -f1)
    last=$(tail -n1 <<<"$bars" | grep -oE ' [0-9]+/[0-9]+ \[[0-9:]+' | head -n1)
    [ -n "$from" ] && [ -n "$last" ] || continue
    to=$(tr -d ' ' <<<"${last%% \[*}" | cut -d/ -f1)
    file=$dst/$name/pieces.txt
    touch "$file"
    # A job is its log's name and the step it started from: a later save (at another HEAD, or after the job went
    # on) updates its record and keeps the code of the first, which is the nearer to what the job ran
    key_steps="steps=$from-" key_log="log=$(basename "$log")"
    old=$(awk -v s="$key_steps" -v l="$key_log" 'index($4, s) == 1 && $6 == l' "$file" | head -n1)
    job_code=$code
    [ -z "$old" ] || job_code=$(awk '{ sub(/^code=/, "", $3); print $3 }' <<<"$old")
    line="$(date -u -r "$log" +%FT%TZ) host=$(hostname) code=$job_code steps=$from-$to elapsed=${last##*\[} $key_log"
    if [ -z "$old" ]; then
      echo "$line" >> "$file"
      pieces=$((pieces + 1))
    elif [ "$old" != "$line" ]; then
      awk -v s="$key_steps" -v l="$key_log" -v new="$line" \
        '{ if (index($4, s) == 1 && $6 == l) { if (!done) print new; done = 1 } else print }' "$file" > "$file.tmp"
      mv "$file.tmp" "$file"
      updated=$((updated + 1))
    fi
  done
fi
msg="study/sync.sh $verb: $n cell(s) from $src to $dst"
if [ "$verb" = save ]; then msg="$msg; $pieces new job record(s) in pieces.txt, $updated updated"; fi
echo "$msg"
