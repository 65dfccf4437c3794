// The "Animate Anyone" tab (lib_animate/webui/tab.py). Globals are prefixed with animate_anyone_.

// Generate: like the webui's own submit(): a task id, the progress bar with live preview over the
// video, Interrupt/Skip while it runs.
function animate_anyone_submit() {
    showSubmitButtons('animate_anyone', false);
    var id = randomId();
    requestProgress(id, gradioApp().getElementById('animate_anyone_video_container'), gradioApp().getElementById('animate_anyone_video'), function() {
        showSubmitButtons('animate_anyone', true);
    });
    var res = Array.from(arguments);
    res[0] = id;
    return res;
}

// Called by the webui's paste machinery (infotext_utils.connect_paste) for every tab; nothing to recount here.
function recalculate_prompts_animate_anyone() {
    return Array.from(arguments);
}

function animate_anyone_open_tab() {
    var items = Array.from(gradioApp().querySelectorAll('#tabs > .tabitem'));
    var index = items.findIndex(function(item) {
        return item.id == 'tab_animate_anyone';
    });
    var buttons = gradioApp().querySelectorAll('#tabs > .tab-nav > button');
    if (index >= 0 && buttons[index]) buttons[index].click();
}

// "Send to animate_anyone" (the paste machinery calls switch_to_<tab id>).
function switch_to_animate_anyone() {
    animate_anyone_open_tab();
    return Array.from(arguments);
}

// All frames to Extras > Batch Process.
function animate_anyone_to_extras_batch() {
    switch_to_extras();
    var batchTab = Array.from(gradioApp().querySelectorAll('#mode_extras > .tab-nav > button')).find(function(button) {
        return button.textContent.trim() == 'Batch Process';
    });
    if (batchTab) batchTab.click();
    return Array.from(arguments);
}

// The result plays in a loop, muted (browsers only autoplay muted videos).
onAfterUiUpdate(function() {
    var video = gradioApp().querySelector('#animate_anyone_video video');
    if (video && !video.loop) {
        video.loop = true;
        video.muted = true;
        var playing = video.play();
        if (playing && playing.catch) playing.catch(function() {});
    }
});
