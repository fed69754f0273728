#!/usr/bin/env bash
# Puts NVIDIA's ptxas and cuobjdump (CUDA 11.8, from Debian bookworm's non-free nvidia-cuda-toolkit
# package) under .tools/cuda/ without installing anything system-wide: apt downloads the one .deb with
# a private source list, dpkg unpacks it. They need only libc. Prints the ptxas path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.tools/cuda"
ptxas="$dir/x/usr/lib/nvidia-cuda-toolkit/bin/ptxas"
if [ ! -x "$ptxas" ] && [ -x "$dir/x/usr/bin/ptxas" ]; then ptxas="$dir/x/usr/bin/ptxas"; fi
if [ -x "$ptxas" ]; then echo "$ptxas"; exit 0; fi
mkdir -p "$dir/lists/partial"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" > "$dir/nf.sources"
apt_options=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$dir" -o Dir::State::Lists="$dir/lists")
apt-get "${apt_options[@]}" update -qq >&2
(cd "$dir" && apt-get "${apt_options[@]}" download -qq nvidia-cuda-toolkit >&2)
dpkg -x "$dir"/nvidia-cuda-toolkit_*.deb "$dir/x"
for candidate in "$dir/x/usr/lib/nvidia-cuda-toolkit/bin/ptxas" "$dir/x/usr/bin/ptxas"; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
echo "ptxas not found in the nvidia-cuda-toolkit package" >&2
exit 1
