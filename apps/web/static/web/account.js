// The API tokens page: a Copy button beside the new token (the read-only field is selectable anyway).
const status = document.getElementById("copy-status");

for (const button of document.querySelectorAll("button[data-copy]")) {
  const field = document.getElementById(button.dataset.copy);
  button.hidden = false;
  button.addEventListener("click", async () => {
    field.focus();
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      status.textContent = "Copied to the clipboard.";
    } catch {
      // No clipboard access (an insecure origin, a denied permission): the text is selected instead.
      status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy it.";
    }
  });
}

// Selecting the whole key on focus saves a fiddly drag on a phone.
for (const field of document.querySelectorAll("input.token-key")) {
  field.addEventListener("focus", () => field.select());
}
