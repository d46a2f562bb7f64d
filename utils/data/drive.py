"""Google Drive downloads of torchmeta's archives (MiniImagenet, TieredImagenet, CUB).

torchmeta 1.8.0 fetches these archives with torchvision 0.8's cookie protocol. Google
Drive no longer sets that cookie for large files; it serves a confirmation page (a
"download anyway" form) instead, which the old code saved as the archive. Since 0.17.1,
torchvision's ``download_file_from_google_drive`` hands the job to ``gdown``, which
follows that page. ``download_from_drive`` (installed in place of torchmeta's
downloader by ``utils.data.torchmeta_compat``) calls it and then checks what arrived.

- An archive already in place with the right md5 is used as it is: nothing is fetched,
  so an archive downloaded by hand is processed offline.
- The download goes to a temporary name and becomes the archive only once its md5
  matches. Otherwise it is removed.
- Whatever went wrong raises ``DriveDownloadError``, a one-paragraph message. It says
  what arrived (an HTML page, a quota message, a truncated or different file), the
  file id and URL, and where to put the archive by hand.
"""
import hashlib
import os
import re

import requests
from torchvision.datasets import utils as tv_utils

from utils.data.errors import DataUnavailable

QUOTA_MARKERS = ("quota exceeded", "too many users have viewed or downloaded")


class DriveDownloadError(DataUnavailable):
    """Google Drive did not deliver the archive; the message says what to do instead."""


def drive_url(file_id):
    """The URL that downloads a public Drive file (a browser follows its confirmation)."""
    return f"https://drive.google.com/uc?id={file_id}&export=download"


def file_md5(path, chunk_size=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path, md5):
    """What a downloaded file is, in words: an HTML page (with its title), a quota
    message, or a file of the wrong size or content."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    text = head.decode("utf-8", errors="replace")
    lowered = text.lower()
    if lowered.lstrip().startswith(("<!doctype html", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        title = f" titled {title.group(1).strip()!r}" if title else ""
        kind = ("a Google Drive quota message" if any(m in lowered for m in QUOTA_MARKERS)
                else "an HTML page")
        return f"{kind}{title} ({size:,} bytes), not the archive"
    return (f"{size:,} bytes with md5 {file_md5(path)} instead of {md5}: a truncated "
            "or different file")


def _failure(err):
    """What a failed download call means, in words (gdown's own advice, which is about
    its command line, left out)."""
    blocks = [" ".join(b.split()) for b in str(err).strip().split("\n\n")]
    if type(err).__name__ == "FileURLRetrievalError":    # gdown: a page without a link
        said = blocks[1] if len(blocks) > 1 and blocks[0].endswith(":") else blocks[0]
        return ("Google Drive answered with a page that has no download link (usually its "
                f"daily quota is exceeded, or the file is no longer shared); it says: {said}")
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return f"Google Drive could not be reached (no network?): {blocks[0]}"
    if isinstance(err, RuntimeError) and "pip install gdown" in str(err):
        return blocks[0]                  # torchvision: gdown is not installed
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"the download failed ({type(err).__name__}: {first_line.rstrip('.')})"


def manual_message(file_id, path, md5, what):
    """The paragraph for a Drive archive that did not arrive: ``what`` happened, then the
    file id, where to put the archive by hand and what --download does then."""
    return (f"Google Drive did not deliver {os.path.basename(path)} (file id {file_id}): "
            f"{what.rstrip('.')}. Download it by hand from {drive_url(file_id)}"
            + (f" (md5 {md5})" if md5 else "")
            + f", put it at {path} and run again with --download: an archive already in "
            "place with the right md5 is only processed, nothing is fetched.")


def download_from_drive(file_id, root, filename=None, md5=None):
    """Place Drive file ``file_id`` at root/filename (torchmeta's downloader signature),
    checking ``md5``; raises ``DriveDownloadError`` when it cannot."""
    root = os.path.expanduser(root)
    path = os.path.join(root, filename or file_id)
    if os.path.isfile(path):
        if md5 is None or file_md5(path) == md5:
            print(f"Using {path} (md5 verified); nothing is downloaded")
            return
        raise DriveDownloadError(
            f"{path} is already there but is {describe_file(path, md5)}. Delete it to "
            f"download it again with --download, or replace it with the archive from "
            f"{drive_url(file_id)} (file id {file_id}, md5 {md5}); an archive in place with "
            "the right md5 is only processed, nothing is fetched.")
    os.makedirs(root, exist_ok=True)
    partial_name = os.path.basename(path) + ".download"
    partial = os.path.join(root, partial_name)
    try:
        if os.path.exists(partial):       # torchvision skips a file that already exists
            os.remove(partial)
        tv_utils.download_file_from_google_drive(file_id, root, partial_name, md5=None)
        if not os.path.isfile(partial):
            raise DriveDownloadError(manual_message(file_id, path, md5, "nothing arrived"))
        if md5 is not None and file_md5(partial) != md5:
            raise DriveDownloadError(manual_message(file_id, path, md5,
                                                    f"it sent {describe_file(partial, md5)}"))
        os.replace(partial, path)
    except DriveDownloadError:
        raise
    except Exception as err:
        raise DriveDownloadError(manual_message(file_id, path, md5, _failure(err))) from err
    finally:      # the partial file, and gdown's own part files of a broken transfer
        for name in os.listdir(root):
            if name == partial_name or (name.startswith(partial_name) and name.endswith(".part")):
                os.remove(os.path.join(root, name))
