// Explorers on the static page: a <select> shows the pre-rendered view it names.
document.addEventListener("DOMContentLoaded", () => {
  for (const explorer of document.querySelectorAll(".vitlens-explorer")) {
    const select = explorer.querySelector("select");
    select.addEventListener("change", () => {
      for (const image of explorer.querySelectorAll("img[data-view]")) {
        image.hidden = image.dataset.view !== select.value;
      }
    });
  }
});
